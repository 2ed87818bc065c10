//! `keyledger serve` over real loopback HTTP: the binary spawned on a free port with a store
//! of its own, bootstrapped with the command line. The admin API's permission matrix and
//! its JSON (byte for byte the command line's), forward-auth, SIGTERM during a burst of
//! creates, slow and oversized clients, forward-auth behind a real nginx, and rate limits:
//! set over the admin API, answered by `/auth`, and made a 429 by the README's nginx
//! recipe.

#![allow(clippy::unwrap_used)]

#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/rate_headers.rs"]
mod rate_headers;
#[path = "support/served.rs"]
mod served;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::HeaderMap as AxumHeaders;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpSocket;
use tokio::runtime::Runtime;

use served::{Served, keyledger};

/// Runs the command line on `db`; panics unless it exits 0.
fn cli(db: &Path, args: &[&str]) -> Output {
    let out = keyledger(db).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "keyledger {args:?}: {out:?}");
    out
}

/// A key made with the command line (the bootstrap): its id and secret.
fn bootstrap_key(
    db: &Path,
    actor: &str,
    actor_role: &str,
    name: &str,
    roles: &[&str],
    ips: &[&str],
) -> (String, String) {
    let mut args = vec![
        "create",
        "--actor",
        actor,
        "--actor-role",
        actor_role,
        "--name",
        name,
        "--json",
    ];
    for role in roles {
        args.extend(["--role", role]);
    }
    for ip in ips {
        args.extend(["--ip", ip]);
    }
    let created: Value = serde_json::from_slice(&cli(db, &args).stdout).unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
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
        assert_eq!(self.headers["content-type"], "application/json", "{self:?}");
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// Asserts an error answer: the status and the `error` kind; returns the body.
    fn error(&self, status: StatusCode, kind: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        let body = self.json();
        assert_eq!(body["error"], kind, "{self:?}");
        body
    }

    /// Asserts a refusal by the access rules.
    fn denied(&self, reason: &str) {
        let body = self.error(StatusCode::FORBIDDEN, "permission_denied");
        assert_eq!(body["reason"], reason, "{self:?}");
    }
}

/// An HTTP/1.1 client: one new connection per request, from a chosen loopback address.
struct Http {
    rt: Runtime,
}

impl Http {
    fn new() -> Http {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        Http { rt }
    }

    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        to: SocketAddr,
        from: &str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        self.rt
            .block_on(send(
                to,
                from.parse().unwrap(),
                method,
                path,
                headers,
                body.to_owned(),
            ))
            .unwrap()
    }
}

async fn send(
    to: SocketAddr,
    from: IpAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: String,
) -> std::io::Result<Answer> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "keyledger.test");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    let stream = socket.connect(to).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(connection);
    let response = sender
        .send_request(request)
        .await
        .map_err(std::io::Error::other)?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    })
}

/// The admin API of one server, from 127.0.0.1.
struct Api<'a> {
    http: &'a Http,
    addr: SocketAddr,
}

impl Api<'_> {
    fn call(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let headers = [("x-api-key", key), ("content-type", "application/json")];
        self.http
            .send(self.addr, "127.0.0.1", method, path, &headers, &body)
    }

    fn raw(&self, key: &str, method: &str, path: &str, body: &str) -> Answer {
        self.http
            .send(self.addr, "127.0.0.1", method, path, &[("x-api-key", key)], body)
    }

    fn get(&self, key: &str, path: &str) -> Answer {
        self.call(key, "GET", path, None)
    }
}

/// Asserts that no answer so far quoted any of these secrets.
fn assert_unquoted(answers: &[&Answer], secrets: &[&str]) {
    for answer in answers {
        for secret in secrets {
            assert!(!answer.body.contains(secret), "{answer:?} quotes a secret");
        }
    }
}

#[test]
fn admin_keys_act_as_their_creator_under_the_command_lines_rules() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (root_id, root) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root admin",
        &["super-admin"],
        &["127.0.0.1"],
    );
    let (alice_id, alice) = bootstrap_key(&db, "alice", "admin", "alice admin", &["admin"], &[]);
    let (bob_id, bob) = bootstrap_key(&db, "bob", "admin", "bob admin", &["admin"], &[]);
    let (_, plain) = bootstrap_key(&db, "alice", "admin", "plain bot", &["bot"], &[]);
    // Root's key with the lesser role acts as root, an admin.
    let (_, root_as_admin) = bootstrap_key(&db, "root", "super-admin", "root's admin key", &["admin"], &[]);
    let (_, elsewhere) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root elsewhere",
        &["super-admin"],
        &["192.0.2.1"],
    );
    let mut served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };

    // Authentication first: the layer's answers, and the admin key's own whitelist.
    let anonymous = http.send(served.addr, "127.0.0.1", "GET", "/v1/keys", &[], "");
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.json(),
        json!({"error": "unauthorized", "reason": "header_missing"})
    );
    assert_eq!(
        anonymous.headers["www-authenticate"],
        r#"ApiKey header="x-api-key""#
    );
    let wrong_address = api.get(&elsewhere, "/v1/keys");
    assert_eq!(wrong_address.status, StatusCode::FORBIDDEN);
    assert_eq!(
        wrong_address.json(),
        json!({"error": "forbidden", "reason": "ip_not_whitelisted"})
    );
    api.get(&plain, "/v1/keys").denied("not_an_admin");
    api.call(
        &plain,
        "POST",
        "/v1/keys",
        Some(json!({"name": "x", "roles": ["bot"]})),
    )
    .denied("not_an_admin");

    // An admin creates a key, acting as its key's creator, through that key.
    let created = api.call(
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "alice bot", "roles": ["bot"], "ips": ["192.0.2.0/24"], "expires_in": "30d"})),
    );
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let view = created.json();
    let id = view["id"].as_str().unwrap().to_owned();
    let secret = view["key"].as_str().unwrap().to_owned();
    assert_eq!(view["created_by"], "alice");
    assert_eq!(view["whitelist"], json!(["192.0.2.0/24"]));
    assert!(view["expires_at"].is_string());
    let shown = api.get(&root, &format!("/v1/keys/{id}"));
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json()["key"], Value::Null, "the secret is shown only once");
    api.call(
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "escalate", "roles": ["super-admin"]})),
    )
    .denied("grants_super_admin");

    // Another admin may do nothing to it; neither may root acting as an admin.
    let on = |what: &str| format!("/v1/keys/{id}{what}");
    for key in [&bob, &root_as_admin] {
        api.call(key, "DELETE", &on(""), None).denied("not_owner");
        api.call(
            key,
            "POST",
            &on("/whitelist"),
            Some(json!({"ips": ["10.0.0.0/8"]})),
        )
        .denied("not_owner");
        api.call(
            key,
            "DELETE",
            &on("/whitelist"),
            Some(json!({"ips": ["192.0.2.0/24"]})),
        )
        .denied("not_owner");
        api.call(key, "POST", &on("/roll"), Some(json!({"grace": "1h"})))
            .denied("not_owner");
        api.call(key, "POST", &on("/disable"), None).denied("not_owner");
        api.call(key, "POST", &on("/enable"), None).denied("not_owner");
    }

    // Its owner may; changes that change nothing are conflicts.
    let added = api.call(
        &alice,
        "POST",
        &on("/whitelist"),
        Some(json!({"ips": ["10.0.0.0/8"]})),
    );
    assert_eq!(added.status, StatusCode::OK, "{added:?}");
    assert_eq!(added.json()["whitelist"], json!(["192.0.2.0/24", "10.0.0.0/8"]));
    api.call(
        &alice,
        "POST",
        &on("/whitelist"),
        Some(json!({"ips": ["10.0.0.0/8"]})),
    )
    .error(StatusCode::CONFLICT, "whitelist_unchanged");
    let removed = api.call(
        &alice,
        "DELETE",
        &on("/whitelist"),
        Some(json!({"ips": ["10.0.0.0/8"]})),
    );
    assert_eq!(removed.json()["whitelist"], json!(["192.0.2.0/24"]));
    api.call(
        &alice,
        "DELETE",
        &on("/whitelist"),
        Some(json!({"ips": ["192.0.2.0/24"]})),
    )
    .error(StatusCode::CONFLICT, "last_whitelist_entry");
    let any = api.call(
        &alice,
        "DELETE",
        &on("/whitelist"),
        Some(json!({"ips": ["192.0.2.0/24"], "allow_any_address": true})),
    );
    assert_eq!(any.json()["whitelist"], json!([]));
    let rolled = api.call(&alice, "POST", &on("/roll"), Some(json!({"grace": "1h"})));
    assert_eq!(rolled.status, StatusCode::OK, "{rolled:?}");
    let rolled = rolled.json();
    assert_eq!(
        rolled.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id", "key", "previous_valid_until"]
    );
    assert_ne!(rolled["key"], secret.as_str());
    let body = api
        .call(&alice, "POST", &on("/roll"), Some(json!({"grace": "soon"})))
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(body["field"], "grace");
    assert_eq!(
        api.call(&alice, "POST", &on("/disable"), None).json()["status"],
        "disabled"
    );
    api.call(&alice, "POST", &on("/disable"), None)
        .error(StatusCode::CONFLICT, "state_unchanged");
    assert_eq!(
        api.call(&alice, "POST", &on("/enable"), None).json()["status"],
        "active"
    );

    // The super admin may delete it; then it is gone for changes, but still shown.
    let deleted = api.call(&root, "DELETE", &on(""), None);
    assert_eq!(deleted.status, StatusCode::OK, "{deleted:?}");
    assert_eq!(deleted.json()["status"], "deleted");
    assert_eq!(deleted.json()["deleted_by"], "root");
    api.call(&root, "DELETE", &on(""), None)
        .error(StatusCode::NOT_FOUND, "key_deleted");
    api.call(&alice, "POST", &on("/disable"), None)
        .error(StatusCode::NOT_FOUND, "key_deleted");
    assert_eq!(api.get(&root, &on("")).json()["status"], "deleted");
    let unknown = api
        .get(&root, "/v1/keys/00000000000000ff")
        .error(StatusCode::NOT_FOUND, "key_not_found");
    assert_eq!(unknown["id"], "00000000000000ff");
    let bad = api
        .get(&root, "/v1/keys/nothex")
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(bad["field"], "key id");

    // Imports: all or none, the first bad line named, no secret ever quoted.
    let lines = "{\"name\": \"legacy one\", \"roles\": [\"bot\"], \"key\": \"legacy_secret_000000001\"}\n\
                 {\"name\": \"legacy two\", \"roles\": [\"bot\"], \"key\": \"legacy_secret_000000002\"}\n";
    let imported = api.raw(&alice, "POST", "/v1/keys/import", lines);
    assert_eq!(imported.status, StatusCode::CREATED, "{imported:?}");
    let imported = imported.json();
    assert_eq!(imported.as_array().unwrap().len(), 2);
    assert_eq!(imported[1]["line"], 2);
    let again = api.raw(&alice, "POST", "/v1/keys/import", lines);
    let body = again.error(StatusCode::CONFLICT, "import_entry");
    assert_eq!(
        (body["index"].clone(), body["source"]["error"].clone()),
        (json!(1), json!("secret_known"))
    );
    let escalate = "{\"name\": \"ok\", \"roles\": [\"bot\"], \"key\": \"legacy_secret_000000003\"}\n\
                    {\"name\": \"x\", \"roles\": [\"super-admin\"], \"key\": \"legacy_secret_000000004\"}\n";
    let refused = api.raw(&alice, "POST", "/v1/keys/import", escalate);
    let body = refused.error(StatusCode::FORBIDDEN, "import_entry");
    assert_eq!(body["index"], 2);
    assert_eq!(body["source"]["error"], "permission_denied");
    assert_eq!(body["source"]["reason"], "grants_super_admin");
    let malformed =
        "{\"name\": \"x\", \"roles\": [\"bot\"], \"key\": \"legacy_secret_000000005\", \"sha256\": \"00\"}\n";
    let bad_line = api.raw(&alice, "POST", "/v1/keys/import", malformed);
    let body = bad_line.error(StatusCode::BAD_REQUEST, "import_entry");
    assert_eq!(body["source"]["field"], "key");
    let empty = api.raw(&alice, "POST", "/v1/keys/import", "");
    assert_eq!(
        empty.error(StatusCode::BAD_REQUEST, "invalid_input")["field"],
        "import"
    );
    assert_unquoted(
        &[&again, &refused, &bad_line],
        &[
            "legacy_secret_000000001",
            "legacy_secret_000000004",
            "legacy_secret_000000005",
        ],
    );

    // Refusals land in the security trail, naming the key they came through.
    let trail = api.get(&root, "/v1/audit?refused=true&unpaged=true");
    assert_eq!(trail.status, StatusCode::OK);
    assert_eq!(trail.headers["content-type"], "application/x-ndjson");
    let attempts: Vec<Value> = trail
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_bob: Vec<&Value> = attempts.iter().filter(|a| a["actor"] == "bob").collect();
    assert_eq!(by_bob.len(), 6, "{attempts:?}");
    assert!(
        by_bob
            .iter()
            .all(|a| a["via"] == bob_id.as_str() && a["reason"] == "not_owner")
    );
    assert!(attempts.iter().any(|a| a["actor"] == "alice"
        && a["via"] == alice_id.as_str()
        && a["reason"] == "grants_super_admin"));
    let bobs_only = api.get(&root, "/v1/audit?refused=true&actor=bob&unpaged=true");
    assert_eq!(bobs_only.body.lines().count(), 6);
    api.get(&root, "/v1/audit?refused=true&kind=created")
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    api.get(&root, "/v1/audit?kind=eaten")
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    api.get(&root, "/v1/audit?colour=blue")
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    let created_by_alice = api.get(&root, "/v1/audit?actor=alice&kind=created&unpaged=true");
    let entries: Vec<Value> = created_by_alice
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries[2]["key_id"], id.as_str());
    assert_eq!(entries[2]["via"], alice_id.as_str());
    let at = api.get(&root, "/v1/audit?at=1&unpaged=true");
    assert_eq!(at.body.lines().count(), 1);
    assert!(at.body.contains(&root_id));

    // The API's JSON is the command line's, byte for byte.
    let audit = api.get(&root, "/v1/audit?unpaged=true");
    let refused_trail = api.get(&root, "/v1/audit?refused=true&unpaged=true");
    let keys = api.get(&root, "/v1/keys?all=true&unpaged=true");
    let live = api.get(&root, "/v1/keys?unpaged=true");
    assert_eq!(served.terminate().map(|s| s.success()), Some(true));
    assert_unquoted(
        &[&audit, &refused_trail, &keys, &live],
        &[&secret, &root, &alice, &bob],
    );
    let stdout = |args: &[&str]| String::from_utf8(cli(&db, args).stdout).unwrap();
    assert_eq!(audit.body, stdout(&["audit", "--json"]));
    assert_eq!(refused_trail.body, stdout(&["audit", "--refused", "--json"]));
    let lines = |text: String| text.lines().map(str::to_owned).collect::<Vec<_>>().join(",");
    assert_eq!(
        keys.body,
        format!("[{}]", lines(stdout(&["list", "--all", "--json"])))
    );
    assert_eq!(live.body, format!("[{}]", lines(stdout(&["list", "--json"]))));
}

#[test]
fn whoami_names_the_actor_an_admin_key_acts_as_with_the_lesser_role() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (root_id, root) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root admin",
        &["super-admin"],
        &["127.0.0.1"],
    );
    let (alice_id, alice) = bootstrap_key(&db, "alice", "admin", "alice admin", &["admin"], &[]);
    // Made by a super admin with the role admin: acts as root, an admin.
    let (lesser_id, lesser) = bootstrap_key(&db, "root", "super-admin", "root's admin key", &["admin"], &[]);
    let (_, plain) = bootstrap_key(&db, "alice", "admin", "plain bot", &["bot"], &[]);
    let (_, elsewhere) = bootstrap_key(
        &db,
        "alice",
        "admin",
        "alice elsewhere",
        &["admin"],
        &["192.0.2.1"],
    );
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };

    for (key, actor, role, id) in [
        (&root, "root", "super-admin", &root_id),
        (&alice, "alice", "admin", &alice_id),
        (&lesser, "root", "admin", &lesser_id),
    ] {
        let answer = api.get(key, "/v1/whoami");
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        assert_eq!(
            answer.json(),
            json!({"actor": actor, "actor_role": role, "key_id": id})
        );
    }
    api.get(&plain, "/v1/whoami").denied("not_an_admin");
    let anonymous = http.send(served.addr, "127.0.0.1", "GET", "/v1/whoami", &[], "");
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let wrong_address = api.get(&elsewhere, "/v1/whoami");
    assert_eq!(
        wrong_address.json(),
        json!({"error": "forbidden", "reason": "ip_not_whitelisted"})
    );
    api.get(&root, "/v1/whoami?as=alice")
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_unquoted(
        &[&wrong_address, &anonymous],
        &[&root, &alice, &lesser, &elsewhere],
    );
}

#[test]
fn auth_answers_200_with_the_key_or_the_layers_401_and_403() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root",
        &["super-admin"],
        &["127.0.0.1"],
    );
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let created = api.call(
        &root,
        "POST",
        "/v1/keys",
        Some(json!({"name": "ops bot/ü, \"two\"", "roles": ["notifier", "billing"], "ips": ["127.0.0.0/8"]})),
    );
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let secret = created.json()["key"].as_str().unwrap().to_owned();
    let auth = |method: &str, path: &str, key: Option<&str>| {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        http.send(served.addr, "127.0.0.3", method, path, &headers, "")
    };

    for (method, path) in [
        ("GET", "/auth"),
        ("GET", "/auth/"),
        ("POST", "/auth/notifications/send?x=1"),
        ("DELETE", "/auth?role=notifier&role=billing"),
    ] {
        let passed = auth(method, path, Some(&secret));
        assert_eq!(passed.status, StatusCode::OK, "{method} {path}: {passed:?}");
        assert_eq!(passed.headers["x-keyledger-key-id"], id.as_str());
        assert_eq!(
            passed.headers["x-keyledger-key-name"],
            "ops%20bot%2F%C3%BC%2C%20%22two%22"
        );
        assert_eq!(passed.headers["x-keyledger-roles"], "notifier,billing");
    }
    let refusals = [
        (auth("GET", "/auth", None), 401, "header_missing"),
        (
            auth("GET", "/auth", Some("klk_nonsense")),
            401,
            "malformed_length",
        ),
        (
            auth("GET", "/auth?role=admin", Some(&secret)),
            403,
            "role_missing",
        ),
        (
            auth("GET", "/auth?role=notifier&role=", Some(&secret)),
            403,
            "role_missing",
        ),
        (
            http.send(
                served.addr,
                "127.0.0.1",
                "GET",
                "/auth",
                &[("x-api-key", &root)],
                "",
            ),
            200,
            "",
        ),
        (
            http.send(
                served.addr,
                "127.0.0.9",
                "GET",
                "/auth",
                &[("x-api-key", &root)],
                "",
            ),
            403,
            "ip_not_whitelisted",
        ),
    ];
    for (answer, status, reason) in &refusals {
        assert_eq!(answer.status.as_u16(), *status, "{answer:?}");
        if *status == 200 {
            continue;
        }
        let error = if *status == 401 {
            "unauthorized"
        } else {
            "forbidden"
        };
        assert_eq!(answer.json(), json!({"error": error, "reason": reason}));
        assert_eq!(answer.headers.contains_key("www-authenticate"), *status == 401);
        assert!(!answer.headers.contains_key("x-keyledger-key-id"));
    }

    // A deleted key gets 401 on the first request after its delete returns.
    assert_eq!(
        api.call(&root, "DELETE", &format!("/v1/keys/{id}"), None).status,
        StatusCode::OK
    );
    assert_eq!(
        auth("GET", "/auth", Some(&secret)).status,
        StatusCode::UNAUTHORIZED
    );

    let health = http.send(served.addr, "127.0.0.1", "GET", "/healthz", &[], "");
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body, r#"{"status":"ok","last_seq":3}"#);
    let nowhere = http.send(served.addr, "127.0.0.1", "GET", "/nowhere", &[], "");
    assert_eq!(
        nowhere.error(StatusCode::NOT_FOUND, "not_found")["error"],
        "not_found"
    );
}

#[test]
fn sigterm_during_a_burst_of_creates_keeps_every_acknowledged_key() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root",
        &["super-admin"],
        &["127.0.0.1"],
    );
    let mut served = Served::start(&db, &[]);
    let addr = served.addr;
    let http = Http::new();
    let (acknowledged, pid_signalled) = http.rt.block_on(async {
        let mut tasks = Vec::new();
        for client in 0..8 {
            let root = root.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for n in 0..2000 {
                    let body = json!({"name": format!("burst {client}-{n}"), "roles": ["bot"]}).to_string();
                    let headers = [("x-api-key", root.as_str())];
                    match send(
                        addr,
                        "127.0.0.1".parse().unwrap(),
                        "POST",
                        "/v1/keys",
                        &headers,
                        body,
                    )
                    .await
                    {
                        Ok(answer) if answer.status == StatusCode::CREATED => {
                            let view: Value = serde_json::from_str(&answer.body).unwrap();
                            ids.push(view["id"].as_str().unwrap().to_owned());
                        }
                        Ok(answer) => panic!("a create answered {answer:?}"),
                        // Refused or cut once the server stops accepting: not acknowledged.
                        Err(_) => break,
                    }
                }
                ids
            }));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let signalled = Command::new("kill")
            .args(["-TERM", &served.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        let mut ids = Vec::new();
        for task in tasks {
            ids.extend(task.await.unwrap());
        }
        (ids, signalled)
    });
    assert!(pid_signalled);
    let status = served.terminate().expect("serve exits after SIGTERM");
    assert!(status.success(), "{status:?}: {}", served.errors());
    assert!(served.errors().contains("SIGTERM"), "{}", served.errors());
    assert_eq!(
        served.lines.recv_timeout(Duration::from_secs(5)).as_deref(),
        Ok("stopped")
    );
    assert!(
        acknowledged.len() >= 8,
        "the burst got going: {}",
        acknowledged.len()
    );
    assert!(acknowledged.len() < 16_000, "SIGTERM stopped the burst");
    drop(served);

    // Every 201 is in the store, as the command line and a restarted server see it.
    let listed = String::from_utf8(cli(&db, &["list", "--json"]).stdout).unwrap();
    let stored: std::collections::HashSet<String> = listed
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let missing: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let again = Served::start(&db, &[]);
    let api = Api {
        http: &http,
        addr: again.addr,
    };
    let last = acknowledged.last().unwrap();
    assert_eq!(api.get(&root, &format!("/v1/keys/{last}")).status, StatusCode::OK);
}

/// Opens a connection and sends a request's first line and part of its headers, never
/// the rest.
fn slow_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
        .unwrap();
    stream
}

/// Whether the server closes `stream` within `within`.
fn closed_by_server(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // Whatever hyper says about the timeout, then the close.
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_clients_are_cut_off_and_never_keep_others_out() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root",
        &["super-admin"],
        &["127.0.0.1"],
    );
    let served = Served::start(&db, &["--max-connections", "2", "--read-timeout", "1"]);
    let http = Http::new();
    let health = || {
        http.send(served.addr, "127.0.0.1", "GET", "/healthz", &[], "")
            .status
    };

    // One slow client of two slots: others are served meanwhile.
    let mut slow = slow_client(served.addr);
    assert_eq!(health(), StatusCode::OK);
    // One that trickles a byte at a time is cut off all the same: the timeout is for the
    // whole of the headers.
    let mut trickle = TcpStream::connect(served.addr).unwrap();
    let started = Instant::now();
    let mut cut = false;
    for byte in b"GET /healthz HTTP/1.1\r\nHost: trickle\r\nX-Slow: "
        .iter()
        .cycle()
        .take(200)
    {
        if trickle.write_all(&[*byte]).is_err() {
            cut = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        cut || closed_by_server(&mut trickle, Duration::from_secs(3)),
        "a trickling client is never cut off"
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert!(closed_by_server(&mut slow, Duration::from_secs(3)));

    // Both slots held by slow clients: a request waits until the timeout frees one.
    let mut holders = [slow_client(served.addr), slow_client(served.addr)];
    std::thread::sleep(Duration::from_millis(100));
    let waited = Instant::now();
    assert_eq!(health(), StatusCode::OK);
    assert!(
        waited.elapsed() < Duration::from_secs(5),
        "{:?}",
        waited.elapsed()
    );
    for holder in &mut holders {
        assert!(closed_by_server(holder, Duration::from_secs(3)));
    }
}

#[test]
fn oversized_and_malformed_bodies_get_json_errors() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root",
        &["super-admin"],
        &["127.0.0.1"],
    );
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let huge = format!(
        r#"{{"name": "{}", "roles": ["bot"]}}"#,
        "x".repeat(keyledger::MAX_BODY_BYTES)
    );
    let body = api
        .raw(&root, "POST", "/v1/keys", &huge)
        .error(StatusCode::PAYLOAD_TOO_LARGE, "invalid_input");
    assert_eq!(body["field"], "body");

    // Sent in chunks, without a length: cut off at the limit all the same.
    let mut stream = TcpStream::connect(served.addr).unwrap();
    write!(
        stream,
        "POST /v1/keys HTTP/1.1\r\nHost: x\r\nx-api-key: {root}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..(keyledger::MAX_BODY_BYTES / chunk.len() + 2) {
        if write!(stream, "{:x}\r\n", chunk.len()).is_err()
            || stream.write_all(&chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains(r#""error":"invalid_input""#), "{answer}");

    // A declared length past the import limit is refused before anything is read.
    let mut stream = TcpStream::connect(served.addr).unwrap();
    write!(
        stream,
        "POST /v1/keys/import HTTP/1.1\r\nHost: x\r\nx-api-key: {root}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        keyledger::MAX_IMPORT_BODY_BYTES + 1
    )
    .unwrap();
    let mut answer = String::new();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = stream.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    for (body, says) in [
        ("{\"name\": \"x\"", "EOF"),
        (
            "{\"name\": \"x\", \"roles\": [\"bot\"], \"colour\": 1}",
            "unknown field `colour`",
        ),
        ("{\"name\": \"x\", \"roles\": \"bot\"}", "expected a sequence"),
        ("", "missing field `name`"),
        (
            "{\"name\": \"x\", \"roles\": [\"bot\"], \"ips\": [\"300.1.1.1\"]}",
            "invalid network",
        ),
        (
            "{\"name\": \"x\", \"roles\": [\"bot\"], \"expires_at\": \"2030-01-01T00:00:00Z\", \"expires_in\": \"1d\"}",
            "not both",
        ),
        (
            "{\"name\": \"x\", \"roles\": [\"bot\"], \"expires_in\": \"1mo\"}",
            "months",
        ),
    ] {
        let answer = api.raw(&root, "POST", "/v1/keys", body);
        let error = answer.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert!(
            error["message"].as_str().unwrap().contains(says),
            "{body}: {answer:?}"
        );
    }
    // A key pasted into the wrong field is not echoed back.
    let pasted = api.raw(
        &root,
        "POST",
        "/v1/keys",
        &format!(r#"{{"name": 5, "roles": "{root}"}}"#),
    );
    pasted.error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_unquoted(&[&pasted], &[&root]);
    api.call(&root, "PUT", "/v1/keys", None)
        .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}

/// An upstream app behind nginx: answers with the `X-Keyledger-Key-Id` it was given, and
/// says so if the client's key reached it (the proxy must strip `x-api-key`).
fn upstream(rt: &Runtime) -> SocketAddr {
    let app = Router::new().fallback(|headers: AxumHeaders| async move {
        let id = headers
            .get("x-keyledger-key-id")
            .map_or_else(|| "no key id".to_owned(), |v| v.to_str().unwrap().to_owned());
        if headers.contains_key("x-api-key") {
            format!("{id}, and the client's x-api-key reached the app")
        } else {
            id
        }
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[test]
fn behind_nginx_auth_request_only_whitelisted_keys_with_their_roles_pass() {
    nginx::binary();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root",
        &["super-admin"],
        &["127.0.0.1"],
    );
    let served = Served::start(&db, &["--trusted-proxy", "127.0.0.1/32"]);
    let http = Http::new();
    let app = upstream(&http.rt);
    let proxy = nginx::Nginx::start(&dir.path().join("nginx"), served.addr, app);
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let create = |name: &str, roles: &[&str]| {
        let answer = api.call(
            &root,
            "POST",
            "/v1/keys",
            Some(if roles.contains(&"admin") {
                json!({"name": name, "roles": roles, "ips": ["127.0.0.5"], "actor": "root"})
            } else {
                json!({"name": name, "roles": roles, "ips": ["127.0.0.5"]})
            }),
        );
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        let v = answer.json();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    };
    let (bot_id, bot) = create("bot", &["bot"]);
    let (admin_id, admin) = create("ops", &["admin"]);
    let through = |from: &str, path: &str, headers: &[(&str, &str)]| {
        let answer = http.send(proxy.addr, from, "GET", path, headers, "");
        assert!(
            [200, 401, 403].contains(&answer.status.as_u16()),
            "{answer:?}\nnginx: {}\nkeyledger: {}",
            proxy.error_log(),
            served.errors()
        );
        answer
    };

    // A valid key passes, and the upstream sees its id, not one the client made up.
    let passed = through("127.0.0.5", "/api/messages", &[("x-api-key", &bot)]);
    assert_eq!(passed.status, StatusCode::OK);
    assert_eq!(passed.body, bot_id);
    let forged = through(
        "127.0.0.5",
        "/api/messages",
        &[("x-api-key", &bot), ("x-keyledger-key-id", "0000000000000000")],
    );
    assert_eq!(forged.body, bot_id);
    assert_eq!(
        through("127.0.0.5", "/api/x", &[]).status,
        StatusCode::UNAUTHORIZED
    );

    // The wrong address gets 403; a spoofed leftmost X-Forwarded-For changes nothing.
    assert_eq!(
        through("127.0.0.6", "/api/messages", &[("x-api-key", &bot)]).status,
        StatusCode::FORBIDDEN
    );
    let spoofed_in = through(
        "127.0.0.6",
        "/api/messages",
        &[("x-api-key", &bot), ("x-forwarded-for", "127.0.0.5")],
    );
    assert_eq!(spoofed_in.status, StatusCode::FORBIDDEN);
    let spoofed_out = through(
        "127.0.0.5",
        "/api/messages",
        &[("x-api-key", &bot), ("x-forwarded-for", "203.0.113.9, 127.0.0.1")],
    );
    assert_eq!(spoofed_out.status, StatusCode::OK);
    assert_eq!(spoofed_out.body, bot_id);

    // A location that requires a role the key lacks: 403; with it: 200.
    assert_eq!(
        through("127.0.0.5", "/admin/purge", &[("x-api-key", &bot)]).status,
        StatusCode::FORBIDDEN
    );
    let with_role = through("127.0.0.5", "/admin/purge", &[("x-api-key", &admin)]);
    assert_eq!(
        (with_role.status, with_role.body.as_str()),
        (StatusCode::OK, admin_id.as_str())
    );

    // A deleted key gets 401 on the first request after its delete returns.
    assert_eq!(
        api.call(&root, "DELETE", &format!("/v1/keys/{bot_id}"), None)
            .status,
        StatusCode::OK
    );
    assert_eq!(
        through("127.0.0.5", "/api/messages", &[("x-api-key", &bot)]).status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        through("127.0.0.5", "/open/page", &[]).body,
        "no key id",
        "the unprotected location reaches the upstream without a key"
    );
}

/// The README's own setup: root bootstraps a super-admin key and later an admin key for a
/// tool. That admin key acts as root with the admin role, and must not take over root's
/// super-admin key (rolling it would hand out its new secret); it still manages root's
/// other keys. A revoked admin key acts as no one.
#[test]
fn an_admin_key_made_by_a_super_admin_cannot_take_over_the_super_admin_key() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (root_id, root) = bootstrap_key(&db, "root", "super-admin", "root admin", &["super-admin"], &[]);
    let (tool_id, tool) = bootstrap_key(&db, "root", "super-admin", "ci tool", &["admin"], &[]);
    let (bot_id, _) = bootstrap_key(&db, "root", "super-admin", "root's bot", &["bot"], &[]);
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let roll = |key: &str, id: &str| api.call(key, "POST", &format!("/v1/keys/{id}/roll"), Some(json!({})));
    roll(&tool, &root_id).denied("outranks_actor");
    api.call(&tool, "POST", &format!("/v1/keys/{root_id}/disable"), None)
        .denied("outranks_actor");
    api.call(&tool, "DELETE", &format!("/v1/keys/{root_id}"), None)
        .denied("outranks_actor");
    let refused = api.get(&root, "/v1/audit?refused=true&unpaged=true");
    assert_eq!(refused.status, StatusCode::OK, "{refused:?}");
    let lines: Vec<Value> = refused
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|l| l["reason"] == "outranks_actor" && l["via"] == tool_id.as_str())
    );
    // root's own super-admin key still works; the tool still manages root's bot.
    assert_eq!(api.get(&root, "/v1/whoami").status, StatusCode::OK);
    let rolled = roll(&tool, &bot_id);
    assert_eq!(rolled.status, StatusCode::OK, "{rolled:?}");
    // Once disabled by root, the tool's key acts as no one.
    let disabled = api.call(&root, "POST", &format!("/v1/keys/{tool_id}/disable"), None);
    assert_eq!(disabled.status, StatusCode::OK, "{disabled:?}");
    assert_eq!(
        api.get(&tool, "/v1/whoami").json(),
        json!({"error": "unauthorized", "reason": "disabled"})
    );
    assert_unquoted(&[&refused, &rolled, &disabled], &[&root, &tool]);
}

/// `PUT /v1/keys/{id}/limits` and `POST /v1/keys` with `rate_limits`: the owner rules of any
/// change to a key, bad input refused before anything is written, removal with `[]`, and
/// the limits in force for `/auth` from the moment the answer comes.
#[test]
fn admin_api_sets_replaces_and_removes_rate_limits_under_the_owner_rules() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (root_id, root) = bootstrap_key(&db, "root", "super-admin", "root", &["super-admin"], &[]);
    let (_, alice) = bootstrap_key(&db, "alice", "admin", "alice admin", &["admin"], &[]);
    let (bob_id, bob) = bootstrap_key(&db, "bob", "admin", "bob admin", &["admin"], &[]);
    let (_, plain) = bootstrap_key(&db, "alice", "admin", "plain bot", &["bot"], &[]);
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };

    // Created with limits, shown shortest window first.
    let created = api.call(
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "metered", "roles": ["bot"], "rate_limits": [
            {"limit": 5000, "window": "1h"}, {"limit": 100, "window": "60s"}
        ]})),
    );
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let view = created.json();
    assert_eq!(
        view["rate_limits"],
        json!([{"limit": 100, "window": "1m"}, {"limit": 5000, "window": "1h"}])
    );
    let id = view["id"].as_str().unwrap().to_owned();
    let secret = view["key"].as_str().unwrap().to_owned();
    assert_eq!(
        api.get(&root, &format!("/v1/keys/{id}")).json()["rate_limits"],
        view["rate_limits"]
    );

    // A bad limit at creation: 400 naming the field, and no key made.
    let keys_before = api.get(&root, "/v1/keys?all=true&unpaged=true").json();
    for rate_limits in [
        json!([{"limit": 0, "window": "1m"}]),
        json!([{"limit": 10, "window": "1y"}]),
        json!([{"limit": 10, "window": "1m"}, {"limit": 20, "window": "60s"}]),
    ] {
        let body = api
            .call(
                &alice,
                "POST",
                "/v1/keys",
                Some(json!({"name": "bad limits", "roles": ["bot"], "rate_limits": rate_limits})),
            )
            .error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(body["field"], "rate limit", "{rate_limits}: {body}");
    }
    let body = api
        .call(
            &alice,
            "POST",
            "/v1/keys",
            Some(json!({"name": "bad limits", "roles": ["bot"], "rate_limits": [{"limit": 1, "per": "1m"}]})),
        )
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(body["field"], "body");
    assert_eq!(
        api.get(&root, "/v1/keys?all=true&unpaged=true").json(),
        keys_before
    );

    let limits = format!("/v1/keys/{id}/limits");
    let put = |key: &str, rate_limits: Value| {
        api.call(key, "PUT", &limits, Some(json!({"rate_limits": rate_limits})))
    };
    let records = || {
        api.get(&root, &format!("/v1/audit?key={id}&unpaged=true"))
            .body
            .lines()
            .count()
    };

    // Another admin may not change them, nor may a key without the admin role.
    put(&bob, json!([])).denied("not_owner");
    put(&plain, json!([])).denied("not_an_admin");

    // Its owner may: the answer is the key after the change.
    let set = put(&alice, json!([{"limit": 1, "window": "1h"}]));
    assert_eq!(set.status, StatusCode::OK, "{set:?}");
    let set = set.json();
    assert_eq!(
        (set["id"].as_str(), set["status"].as_str()),
        (Some(id.as_str()), Some("active"))
    );
    assert_eq!(set["rate_limits"], json!([{"limit": 1, "window": "1h"}]));
    assert_eq!(set["key"], Value::Null, "no secret in the answer");
    put(&alice, json!([{"limit": 1, "window": "3600s"}])).error(StatusCode::CONFLICT, "state_unchanged");

    // In force at once: one request an hour.
    let auth = || {
        http.send(
            served.addr,
            "127.0.0.1",
            "GET",
            "/auth",
            &[("x-api-key", &secret)],
            "",
        )
    };
    assert_eq!(auth().status, StatusCode::OK);
    assert_eq!(auth().status, StatusCode::TOO_MANY_REQUESTS);

    // Bad input writes nothing, whatever is wrong with it.
    let before = records();
    for (rate_limits, field) in [
        (json!([{"limit": 0, "window": "1m"}]), "rate limit"),
        (json!([{"limit": 1, "window": "forever"}]), "rate limit"),
        (json!([{"limit": 1, "window": "31d"}]), "rate limit"),
        (
            json!([{"limit": 1, "window": "1s"}, {"limit": 2, "window": "1m"}, {"limit": 3, "window": "1h"},
                   {"limit": 4, "window": "1d"}, {"limit": 5, "window": "2d"}]),
            "rate limit",
        ),
        (json!("100/1m"), "body"),
        (json!([{"limit": -1, "window": "1m"}]), "body"),
    ] {
        let body = put(&alice, rate_limits.clone()).error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(body["field"], field, "{rate_limits}: {body}");
    }
    let empty = api.call(&alice, "PUT", &limits, Some(json!({})));
    assert_eq!(
        empty.error(StatusCode::BAD_REQUEST, "invalid_input")["field"],
        "body"
    );
    assert_eq!(records(), before);
    assert_eq!(
        api.get(&root, &format!("/v1/keys/{id}")).json()["rate_limits"],
        json!([{"limit": 1, "window": "1h"}])
    );

    // `[]` removes them: the key passes again, with no rate-limit headers.
    let removed = put(&alice, json!([]));
    assert_eq!(removed.status, StatusCode::OK, "{removed:?}");
    assert_eq!(removed.json()["rate_limits"], json!([]));
    for _ in 0..3 {
        let passed = auth();
        assert_eq!(passed.status, StatusCode::OK, "{passed:?}");
        assert!(rate_headers::no_rate_headers(&passed.headers), "{passed:?}");
    }
    put(&alice, json!([])).error(StatusCode::CONFLICT, "state_unchanged");
    assert_eq!(records(), before + 1);

    // A super admin may limit anyone's key; an admin never the super admin's.
    let by_root = put(&root, json!([{"limit": 10, "window": "1s"}]));
    assert_eq!(by_root.status, StatusCode::OK, "{by_root:?}");
    api.call(
        &alice,
        "PUT",
        &format!("/v1/keys/{root_id}/limits"),
        Some(json!({"rate_limits": []})),
    )
    .denied("outranks_actor");

    // Unknown, malformed and deleted ids; other methods.
    api.call(
        &root,
        "PUT",
        "/v1/keys/00000000000000ff/limits",
        Some(json!({"rate_limits": []})),
    )
    .error(StatusCode::NOT_FOUND, "key_not_found");
    let bad_id = api
        .call(
            &root,
            "PUT",
            "/v1/keys/nothex/limits",
            Some(json!({"rate_limits": []})),
        )
        .error(StatusCode::BAD_REQUEST, "invalid_input");
    assert_eq!(bad_id["field"], "key id");
    api.get(&root, &limits)
        .error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    assert_eq!(
        api.call(&root, "DELETE", &format!("/v1/keys/{id}"), None).status,
        StatusCode::OK
    );
    put(&root, json!([])).error(StatusCode::NOT_FOUND, "key_deleted");

    // An admin key past its own limit is told to wait, as any key is.
    let bobs = api.call(
        &root,
        "PUT",
        &format!("/v1/keys/{bob_id}/limits"),
        Some(json!({"rate_limits": [{"limit": 1, "window": "1h"}]})),
    );
    assert_eq!(bobs.status, StatusCode::OK, "{bobs:?}");
    assert_eq!(api.get(&bob, "/v1/whoami").status, StatusCode::OK);
    let waiting = api.get(&bob, "/v1/whoami");
    assert_eq!(
        waiting.error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests")["reason"],
        "rate_limited"
    );
    assert!(
        (3590..=3600).contains(&rate_headers::retry_after(&waiting.headers)),
        "{waiting:?}"
    );
}

/// `/auth` for a key with rate limits: 200 with the `RateLimit` headers, then the layer's
/// 429 with `Retry-After`; with `deny=403` (nginx), a 403 that names the reason in a
/// header. Every refusal names its reason; a key without limits gets no such headers.
#[test]
fn auth_answers_a_key_past_its_limit_429_or_with_deny_403_a_403_naming_the_reason() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root",
        &["super-admin"],
        &["127.0.0.1"],
    );
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let create = |body: Value| {
        let answer = api.call(&root, "POST", "/v1/keys", Some(body));
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        let v = answer.json();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    };
    let (id, limited) = create(json!({"name": "metered", "roles": ["bot"], "rate_limits": [
        {"limit": 2, "window": "1h"}, {"limit": 1000, "window": "1d"}
    ]}));
    let (_, plain) = create(json!({"name": "plain", "roles": ["bot"]}));
    let auth = |path: &str, key: Option<&str>| {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        http.send(served.addr, "127.0.0.3", "GET", path, &headers, "")
    };
    let policy = r#""2/1h";q=2;w=3600"#;

    for remaining in [1, 0] {
        let passed = auth("/auth", Some(&limited));
        assert_eq!(passed.status, StatusCode::OK, "{passed:?}");
        assert_eq!(passed.headers["x-keyledger-key-id"], id.as_str());
        assert_eq!(
            rate_headers::rate_limit(&passed.headers, "2/1h", policy).0,
            remaining
        );
        assert!(!passed.headers.contains_key("retry-after"));
        assert!(!passed.headers.contains_key("x-keyledger-reason"));
    }

    let limited_now = auth("/auth/v1/messages?x=1", Some(&limited));
    assert_eq!(
        limited_now.error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests")["reason"],
        "rate_limited"
    );
    let wait = rate_headers::retry_after(&limited_now.headers);
    assert!((1790..=1800).contains(&wait), "{limited_now:?}");
    assert_eq!(
        rate_headers::rate_limit(&limited_now.headers, "2/1h", policy),
        (0, wait)
    );
    assert_eq!(limited_now.headers["x-keyledger-reason"], "rate_limited");
    assert!(!limited_now.headers.contains_key("x-keyledger-key-id"));

    for path in ["/auth?deny=403", "/auth/v1/messages?role=bot&deny=403"] {
        let denied = auth(path, Some(&limited));
        assert_eq!(
            denied.json(),
            json!({"error": "forbidden", "reason": "rate_limited"}),
            "{path}: {denied:?}"
        );
        assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied:?}");
        assert_eq!(denied.headers["x-keyledger-reason"], "rate_limited");
        let wait = rate_headers::retry_after(&denied.headers);
        assert!((1790..=1800).contains(&wait), "{denied:?}");
        assert_eq!(
            rate_headers::rate_limit(&denied.headers, "2/1h", policy),
            (0, wait)
        );
    }

    // A key without limits: no rate-limit headers, ever; every refusal names its reason.
    for _ in 0..5 {
        let passed = auth("/auth?deny=403", Some(&plain));
        assert_eq!(passed.status, StatusCode::OK, "{passed:?}");
        assert!(rate_headers::no_rate_headers(&passed.headers), "{passed:?}");
    }
    for (path, key, status, reason) in [
        ("/auth?deny=403", None, 401, "header_missing"),
        (
            "/auth?deny=403&role=admin",
            Some(plain.as_str()),
            403,
            "role_missing",
        ),
        ("/auth?role=admin", Some(plain.as_str()), 403, "role_missing"),
    ] {
        let refused = auth(path, key);
        assert_eq!(refused.status.as_u16(), status, "{refused:?}");
        assert_eq!(refused.json()["reason"], reason);
        assert_eq!(refused.headers["x-keyledger-reason"], reason);
        assert!(rate_headers::no_rate_headers(&refused.headers), "{refused:?}");
    }
}

/// The README's nginx recipe, exactly as written, on a real nginx: the client of a key
/// with limits gets the `RateLimit` headers on the app's answers, then nginx's 429 with
/// `Retry-After`; a key without limits never gets them; other refusals stay 401 and 403.
#[test]
fn behind_the_readme_nginx_recipe_a_key_past_its_limit_gets_429_with_retry_after() {
    nginx::binary();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(
        &db,
        "root",
        "super-admin",
        "root",
        &["super-admin"],
        &["127.0.0.1"],
    );
    // The recipe's `proxy_bind` address, and only it, is trusted.
    let served = Served::start(&db, &["--trusted-proxy", "127.0.0.2"]);
    let http = Http::new();
    let app = upstream(&http.rt);
    let proxy = nginx::Nginx::start_readme(&dir.path().join("nginx"), served.addr, app);
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let create = |body: Value| {
        let answer = api.call(&root, "POST", "/v1/keys", Some(body));
        assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
        let v = answer.json();
        (
            v["id"].as_str().unwrap().to_owned(),
            v["key"].as_str().unwrap().to_owned(),
        )
    };
    let (limited_id, limited) = create(json!({"name": "metered", "roles": ["bot"], "ips": ["127.0.0.5"],
        "rate_limits": [{"limit": 2, "window": "1h"}]}));
    let (plain_id, plain) = create(json!({"name": "plain", "roles": ["bot"], "ips": ["127.0.0.5"]}));
    let through = |from: &str, key: Option<&str>| {
        let headers: Vec<(&str, &str)> = key.map(|k| ("x-api-key", k)).into_iter().collect();
        let answer = http.send(proxy.addr, from, "GET", "/api/messages", &headers, "");
        assert!(
            [200, 401, 403, 429].contains(&answer.status.as_u16()),
            "{answer:?}\nnginx: {}\nkeyledger: {}",
            proxy.error_log(),
            served.errors()
        );
        answer
    };
    let policy = r#""2/1h";q=2;w=3600"#;

    // Before the limit: the app's answer, with the key's RateLimit headers.
    for remaining in [1, 0] {
        let passed = through("127.0.0.5", Some(&limited));
        assert_eq!(passed.status, StatusCode::OK, "{passed:?}");
        assert_eq!(passed.body, limited_id);
        let (r, t) = rate_headers::rate_limit(&passed.headers, "2/1h", policy);
        assert_eq!(r, remaining);
        assert!((1790..=3600).contains(&t), "{passed:?}");
        assert!(!passed.headers.contains_key("retry-after"));
    }

    // Past it: nginx's 429, never the app, with when to retry.
    let refused = through("127.0.0.5", Some(&limited));
    assert_eq!(
        refused.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{refused:?}\nnginx: {}",
        proxy.error_log()
    );
    assert!(!refused.body.contains(&limited_id), "{refused:?}");
    let wait = rate_headers::retry_after(&refused.headers);
    assert!((1790..=1800).contains(&wait), "{refused:?}");
    assert_eq!(
        rate_headers::rate_limit(&refused.headers, "2/1h", policy),
        (0, wait)
    );

    // A key without limits: the app's answers, without any rate-limit header.
    for _ in 0..4 {
        let passed = through("127.0.0.5", Some(&plain));
        assert_eq!(
            (passed.status, passed.body.as_str()),
            (StatusCode::OK, plain_id.as_str())
        );
        assert!(rate_headers::no_rate_headers(&passed.headers), "{passed:?}");
    }

    // Other refusals stay what they were: 403 from the wrong address (for the limited key
    // too: its address is checked before its limit), 401 without a key.
    for key in [&plain, &limited] {
        let elsewhere = through("127.0.0.6", Some(key));
        assert_eq!(elsewhere.status, StatusCode::FORBIDDEN, "{elsewhere:?}");
        assert_eq!(
            elsewhere.body, r#"{"error":"forbidden","reason":"ip_not_whitelisted"}"#,
            "the recipe names the reason, as JSON"
        );
        assert!(rate_headers::no_rate_headers(&elsewhere.headers), "{elsewhere:?}");
    }
    let anonymous = through("127.0.0.5", None);
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.body,
        r#"{"error":"unauthorized","reason":"header_missing"}"#
    );
    assert!(rate_headers::no_rate_headers(&anonymous.headers), "{anonymous:?}");
}

/// Credits over HTTP: set at creation, spent by `/auth` (`?cost=N`, the largest counting)
/// with what is left in a header, refused 429 (or with `deny=403` a 403 naming
/// `usage_exceeded`) with `Retry-After` to the next refill; set, topped up and removed under
/// the owner rules, bad input refused naming the field with nothing written.
#[test]
fn auth_spends_credits_and_the_admin_api_sets_adds_and_removes_them() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(&db, "root", "super-admin", "root", &["super-admin"], &[]);
    let (_, alice) = bootstrap_key(&db, "alice", "admin", "alice admin", &["admin"], &[]);
    let (_, bob) = bootstrap_key(&db, "bob", "admin", "bob admin", &["admin"], &[]);
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let created = api.call(
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "metered", "roles": ["bot"],
            "credits": {"remaining": 10, "refill": {"amount": 10, "every": "1h"}}})),
    );
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let view = created.json();
    assert_eq!(view["credits"]["remaining"], 10);
    assert_eq!(view["credits"]["refill"], json!({"amount": 10, "every": "1h"}));
    assert!(view["credits"]["next_refill_at"].is_string(), "{view}");
    let id = view["id"].as_str().unwrap().to_owned();
    let secret = view["key"].as_str().unwrap().to_owned();
    let auth = |path: &str| {
        http.send(
            served.addr,
            "127.0.0.1",
            "GET",
            path,
            &[("x-api-key", &secret)],
            "",
        )
    };

    let passed = auth("/auth?cost=4");
    assert_eq!(passed.status, StatusCode::OK, "{passed:?}");
    assert_eq!(passed.headers["x-keyledger-credits-remaining"], "6");
    // A client that adds its own, smaller cost to the query does not pay less.
    let passed = auth("/auth?cost=5&cost=1");
    assert_eq!(passed.headers["x-keyledger-credits-remaining"], "1");
    for bad in ["/auth?cost=0", "/auth?cost=x", "/auth?cost=9007199254740993"] {
        let refused = auth(bad);
        assert_eq!(
            refused.error(StatusCode::FORBIDDEN, "forbidden")["reason"],
            "cost_invalid",
            "{bad}"
        );
    }
    let refused = auth("/auth?cost=2");
    assert_eq!(
        refused.error(StatusCode::TOO_MANY_REQUESTS, "too_many_requests")["reason"],
        "usage_exceeded"
    );
    assert_eq!(refused.headers["x-keyledger-reason"], "usage_exceeded");
    let wait: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((3590..=3600).contains(&wait), "{refused:?}");
    let denied = auth("/auth?cost=2&deny=403");
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{denied:?}");
    assert_eq!(
        denied.json(),
        json!({"error": "forbidden", "reason": "usage_exceeded"})
    );
    assert!(denied.headers.contains_key("retry-after"));
    assert_eq!(
        api.get(&root, &format!("/v1/keys/{id}")).json()["credits"]["remaining"],
        1,
        "the refusals spent nothing"
    );

    let credits = format!("/v1/keys/{id}/credits");
    let add = format!("/v1/keys/{id}/credits/add");
    let records = || api.get(&root, "/v1/audit?unpaged=true").body.lines().count();
    let before = records();
    api.call(&bob, "PUT", &credits, Some(json!({"credits": null})))
        .denied("not_owner");
    api.call(&bob, "POST", &add, Some(json!({"amount": 5})))
        .denied("not_owner");
    for (body, field) in [
        (json!({"credits": {"remaining": -1}}), "credits"),
        (
            json!({"credits": {"remaining": 9_007_199_254_740_993_u64}}),
            "credits",
        ),
        (
            json!({"credits": {"remaining": 5, "refill": {"amount": 5, "every": "10s"}}}),
            "refill",
        ),
        (
            json!({"credits": {"remaining": 5, "refill": {"amount": 0, "every": "1d"}}}),
            "refill",
        ),
        (json!({}), "body"),
    ] {
        let answer = api.call(&alice, "PUT", &credits, Some(body.clone()));
        assert_eq!(
            answer.error(StatusCode::BAD_REQUEST, "invalid_input")["field"],
            field,
            "{body}"
        );
    }
    for (body, field) in [
        (json!({"amount": 0}), "credits"),
        (json!({"amount": "5"}), "body"),
    ] {
        let answer = api.call(&alice, "POST", &add, Some(body.clone()));
        assert_eq!(
            answer.error(StatusCode::BAD_REQUEST, "invalid_input")["field"],
            field,
            "{body}"
        );
    }
    assert_eq!(records(), before, "nothing refused was written");

    let topped = api.call(&alice, "POST", &add, Some(json!({"amount": 5})));
    assert_eq!(topped.status, StatusCode::OK, "{topped:?}");
    assert_eq!(topped.json()["credits"]["remaining"], 6);
    assert_eq!(auth("/auth").headers["x-keyledger-credits-remaining"], "5");
    let set = api.call(
        &root,
        "PUT",
        &credits,
        Some(json!({"credits": {"remaining": 100}})),
    );
    assert_eq!(set.json()["credits"], json!({"remaining": 100, "refill": null}));
    let removed = api.call(&alice, "PUT", &credits, Some(json!({"credits": null})));
    assert_eq!(removed.json()["credits"], Value::Null);
    let unmetered = auth("/auth?cost=1000");
    assert_eq!(unmetered.status, StatusCode::OK);
    assert!(!unmetered.headers.contains_key("x-keyledger-credits-remaining"));
    api.call(&alice, "PUT", &credits, Some(json!({"credits": null})))
        .error(StatusCode::CONFLICT, "state_unchanged");
    let audit: Vec<Value> = api
        .get(&root, &format!("/v1/audit?key={id}&unpaged=true"))
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = audit.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "created",
            "credits_set",
            "credits_added",
            "credits_set",
            "credits_set"
        ]
    );
    assert_eq!(audit[2]["credits_added"], 5);
    assert_eq!(audit[4]["credits"], Value::Null);
}

#[test]
fn admin_api_answers_a_keys_usage_per_hour_and_day_and_refuses_bad_ranges() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(&db, "root", "super-admin", "root", &["super-admin"], &[]);
    let (_, alice) = bootstrap_key(&db, "alice", "admin", "alice admin", &["admin"], &[]);
    let (_, bot) = bootstrap_key(&db, "alice", "admin", "plain bot", &["bot"], &[]);
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let created = api.call(
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "metered", "roles": ["bot"], "rate_limits": [{"limit": 2, "window": "1h"}]})),
    );
    let id = created.json()["id"].as_str().unwrap().to_owned();
    let secret = created.json()["key"].as_str().unwrap().to_owned();
    let statuses: Vec<StatusCode> = (0..3)
        .map(|_| {
            http.send(
                served.addr,
                "127.0.0.3",
                "GET",
                "/auth",
                &[("x-api-key", &secret)],
                "",
            )
            .status
        })
        .collect();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::OK, StatusCode::TOO_MANY_REQUESTS]
    );

    // Any admin reads it, as they read the key itself.
    let hours = api.get(&root, &format!("/v1/keys/{id}/usage"));
    assert_eq!(hours.status, StatusCode::OK, "{hours:?}");
    let hours = hours.json();
    assert_eq!(
        (hours["key_id"].as_str(), hours["granularity"].as_str()),
        (Some(id.as_str()), Some("hour"))
    );
    let buckets = hours["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 24);
    let now = buckets.last().unwrap();
    assert_eq!(now["accepted"], 2);
    assert_eq!(now["rejected"], json!({"rate_limited": 1}));
    let start = now["start"].as_str().unwrap().to_owned();
    let one = api
        .get(
            &alice,
            &format!("/v1/keys/{id}/usage?since={start}&until={start}"),
        )
        .json();
    assert_eq!(one["buckets"].as_array().unwrap().len(), 1);
    let days = api
        .get(&alice, &format!("/v1/keys/{id}/usage?granularity=day"))
        .json();
    assert_eq!(days["buckets"].as_array().unwrap().len(), 30);
    assert_eq!(days["buckets"][29]["accepted"], 2);

    // Bad ranges, parameters and ids: typed errors.
    let on = |query: &str| format!("/v1/keys/{id}/usage?{query}");
    for (query, field) in [
        ("granularity=week", "granularity"),
        ("since=yesterday", "since"),
        ("since=2020-01-01T00:00:00Z", "since"),
        ("since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z", "since"),
        ("limit=5", "query"),
    ] {
        let body = api
            .get(&root, &on(query))
            .error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    api.get(&root, "/v1/keys/00000000000000ff/usage")
        .error(StatusCode::NOT_FOUND, "key_not_found");
    // A key that is no admin's is refused, as for every admin request.
    assert_eq!(api.get(&bot, &on("")).status, StatusCode::FORBIDDEN);
}

/// Every item of a paged listing, following the cursors from `first`; asserts that every
/// page holds at most `limit` and that only the last has no `next`.
fn follow(api: &Api, key: &str, first: &str, field: &str, limit: usize) -> Vec<Value> {
    let mut items = Vec::new();
    let mut path = first.to_owned();
    loop {
        let page = api.get(key, &path);
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        let page = page.json();
        let got = page[field].as_array().unwrap().clone();
        assert!(got.len() <= limit, "{page}");
        items.extend(got);
        match page["next"].as_str() {
            Some(next) => {
                assert!(
                    !page[field].as_array().unwrap().is_empty(),
                    "a next after an empty page"
                );
                path = format!("{first}&cursor={next}");
            }
            None => return items,
        }
    }
}

fn names(items: &[Value]) -> Vec<&str> {
    items.iter().map(|k| k["name"].as_str().unwrap()).collect()
}

#[test]
fn admin_api_pages_keys_and_audit_with_cursors_that_survive_creates_and_deletes() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = bootstrap_key(&db, "root", "super-admin", "root", &["super-admin"], &[]);
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };
    let mut ids = Vec::new();
    for (i, name) in ["alpha-1", "alpha-2", "Beta-3", "alpha-4", "bETa-5", "alpha-6"]
        .iter()
        .enumerate()
    {
        let role = if i % 2 == 0 { "reader" } else { "writer" };
        let created = api.call(
            &root,
            "POST",
            "/v1/keys",
            Some(json!({"name": name, "roles": [role]})),
        );
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        ids.push(created.json()["id"].as_str().unwrap().to_owned());
    }

    // The default answer is a bounded page; its cursor survives creates and deletes.
    let first = api.get(&root, "/v1/keys").json();
    assert_eq!(names(first["keys"].as_array().unwrap()).len(), 7);
    assert!(first["next"].is_null());
    let page1 = api.get(&root, "/v1/keys?limit=3").json();
    assert_eq!(
        names(page1["keys"].as_array().unwrap()),
        ["root", "alpha-1", "alpha-2"]
    );
    let next = page1["next"].as_str().unwrap().to_owned();
    // One already listed and one not yet listed go; one comes.
    for id in [&ids[0], &ids[3]] {
        assert_eq!(
            api.call(&root, "DELETE", &format!("/v1/keys/{id}"), None).status,
            StatusCode::OK
        );
    }
    api.call(
        &root,
        "POST",
        "/v1/keys",
        Some(json!({"name": "gamma-7", "roles": ["reader"]})),
    );
    let rest = follow(&api, &root, "/v1/keys?limit=3", "keys", 3);
    let after: Vec<Value> = {
        let mut items = Vec::new();
        let page = api.get(&root, &format!("/v1/keys?limit=3&cursor={next}")).json();
        items.extend(page["keys"].as_array().unwrap().clone());
        let mut cursor = page["next"].as_str().map(str::to_owned);
        while let Some(c) = cursor {
            let page = api.get(&root, &format!("/v1/keys?limit=3&cursor={c}")).json();
            items.extend(page["keys"].as_array().unwrap().clone());
            cursor = page["next"].as_str().map(str::to_owned);
        }
        items
    };
    assert_eq!(names(&after), ["Beta-3", "bETa-5", "alpha-6", "gamma-7"]);
    assert_eq!(
        names(&rest),
        ["root", "alpha-2", "Beta-3", "bETa-5", "alpha-6", "gamma-7"]
    );

    // Filters: a name (or id) substring in any case, a role, a status, newest first.
    let beta = follow(&api, &root, "/v1/keys?q=BETA&limit=1", "keys", 1);
    assert_eq!(names(&beta), ["Beta-3", "bETa-5"]);
    let by_id = api
        .get(&root, &format!("/v1/keys?q={}", &ids[5][4..12].to_uppercase()))
        .json();
    assert_eq!(names(by_id["keys"].as_array().unwrap()), ["alpha-6"]);
    let writers = follow(&api, &root, "/v1/keys?role=writer&limit=2", "keys", 2);
    assert_eq!(names(&writers), ["alpha-2", "alpha-6"]);
    let deleted = follow(&api, &root, "/v1/keys?status=deleted&limit=1", "keys", 1);
    assert_eq!(names(&deleted), ["alpha-1", "alpha-4"]);
    let every = follow(&api, &root, "/v1/keys?all=true&limit=4", "keys", 4);
    assert_eq!(every.len(), 8);
    let newest = follow(&api, &root, "/v1/keys?order=newest&q=a-&limit=2", "keys", 2);
    assert_eq!(
        names(&newest),
        ["gamma-7", "alpha-6", "bETa-5", "Beta-3", "alpha-2"]
    );

    // The audit trail, a page at a time, with its filters.
    let created = follow(&api, &root, "/v1/audit?kind=created&limit=2", "entries", 2);
    assert_eq!(created.len(), 8);
    assert!(
        created
            .windows(2)
            .all(|w| w[0]["seq"].as_u64() < w[1]["seq"].as_u64())
    );
    let audit = follow(&api, &root, "/v1/audit?limit=5", "entries", 5);
    assert_eq!(audit.len(), 10);
    let newest = follow(&api, &root, "/v1/audit?order=newest&limit=4", "entries", 4);
    let seqs: Vec<u64> = newest.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=10).rev().collect::<Vec<u64>>());
    let at = follow(&api, &root, "/v1/audit?at=3&limit=2", "keys", 2);
    assert_eq!(names(&at), ["root", "alpha-1", "alpha-2"]);

    // Bad paging input: a typed 400 naming the field, and nothing changes.
    let before = api.get(&root, "/v1/keys?all=true&unpaged=true").body;
    let records = api.get(&root, "/v1/audit?unpaged=true").body;
    let cursor_of = |path: &str| api.get(&root, path).json()["next"].as_str().unwrap().to_owned();
    let beta_cursor = cursor_of("/v1/keys?q=beta&limit=1");
    let mut tampered = beta_cursor.clone().into_bytes();
    tampered[5] = if tampered[5] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let audit_cursor = cursor_of("/v1/audit?limit=1");
    for (path, field) in [
        ("/v1/keys?limit=0".to_owned(), "limit"),
        ("/v1/keys?limit=1001".to_owned(), "limit"),
        ("/v1/keys?limit=ten".to_owned(), "limit"),
        ("/v1/audit?limit=0".to_owned(), "limit"),
        ("/v1/keys?status=gone".to_owned(), "status"),
        ("/v1/keys?order=sideways".to_owned(), "order"),
        (format!("/v1/keys?q=beta&limit=1&cursor={tampered}"), "cursor"),
        (format!("/v1/keys?q=alpha&limit=1&cursor={beta_cursor}"), "cursor"),
        (format!("/v1/keys?q=beta&limit=1&cursor={audit_cursor}"), "cursor"),
        (format!("/v1/audit?limit=1&cursor={beta_cursor}"), "cursor"),
        (
            format!("/v1/audit?kind=created&limit=1&cursor={audit_cursor}"),
            "cursor",
        ),
        ("/v1/keys?cursor=nonsense".to_owned(), "cursor"),
        ("/v1/keys?unpaged=true&limit=5".to_owned(), "query"),
        ("/v1/audit?unpaged=true&cursor=x".to_owned(), "query"),
        ("/v1/audit?refused=true&order=newest".to_owned(), "query"),
        ("/v1/audit?order=oldest-first".to_owned(), "order"),
        (
            format!("/v1/audit?order=newest&limit=1&cursor={audit_cursor}"),
            "cursor",
        ),
    ] {
        let body = api
            .get(&root, &path)
            .error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(body["field"], field, "{path}: {body}");
    }
    // The same cursor with a larger page is still this query's.
    assert_eq!(
        api.get(&root, &format!("/v1/keys?q=beta&limit=5&cursor={beta_cursor}"))
            .status,
        StatusCode::OK
    );
    assert_eq!(api.get(&root, "/v1/keys?all=true&unpaged=true").body, before);
    assert_eq!(api.get(&root, "/v1/audit?unpaged=true").body, records);
}

#[test]
fn admin_api_creates_and_patches_a_keys_external_id_and_meta_and_auth_names_the_owner() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, alice) = bootstrap_key(&db, "alice", "admin", "alice admin", &["admin"], &[]);
    let (_, bob) = bootstrap_key(&db, "bob", "admin", "bob admin", &["admin"], &[]);
    let served = Served::start(&db, &[]);
    let http = Http::new();
    let api = Api {
        http: &http,
        addr: served.addr,
    };

    let created = api.call(
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "tenant bot", "roles": ["bot"], "external_id": "tenant 7/ä", "meta": {"plan": "pro"}})),
    );
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    let view = created.json();
    assert_eq!(view["external_id"], "tenant 7/ä");
    assert_eq!(view["meta"], json!({"plan": "pro"}));
    let id = view["id"].as_str().unwrap().to_owned();
    let secret = view["key"].as_str().unwrap().to_owned();

    // The listing filters by owner, server-side, and binds its cursor to the filter.
    let other = api.call(
        &alice,
        "POST",
        "/v1/keys",
        Some(json!({"name": "other tenant", "roles": ["bot"], "external_id": "tenant 8"})),
    );
    assert_eq!(other.status, StatusCode::CREATED, "{other:?}");
    let listed = api.get(&alice, "/v1/keys?external_id=tenant%207%2F%C3%A4").json();
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [view["id"].as_str().unwrap()]);
    let first = api.get(&alice, "/v1/keys?limit=1").json();
    let cursor = first["next"].as_str().unwrap();
    let crossed = api.get(
        &alice,
        &format!("/v1/keys?limit=1&external_id=tenant%208&cursor={cursor}"),
    );
    assert_eq!(
        crossed.error(StatusCode::BAD_REQUEST, "invalid_input")["field"],
        "cursor"
    );

    // Forward-auth names the owner, percent-encoded as the name is.
    let auth = api.get(&secret, "/auth");
    assert_eq!(auth.status, StatusCode::OK, "{auth:?}");
    assert_eq!(auth.headers["x-keyledger-external-id"], "tenant%207%2F%C3%A4");

    // Only the fields present change; the actor is the admin key's.
    let path = format!("/v1/keys/{id}");
    let patched = api.call(
        &alice,
        "PATCH",
        &path,
        Some(json!({"name": "renamed", "add_roles": ["billing"], "meta": null})),
    );
    assert_eq!(patched.status, StatusCode::OK, "{patched:?}");
    let view = patched.json();
    assert_eq!(view["name"], "renamed");
    assert_eq!(view["roles"], json!(["bot", "billing"]));
    assert_eq!(view["external_id"], "tenant 7/ä");
    assert_eq!(view["meta"], Value::Null);

    // Bad input: 400 naming the field, nothing written.
    let before = api.get(&alice, "/v1/audit?unpaged=true").body;
    let key_shaped = secret.as_str();
    for (body, field) in [
        (json!({"nmae": "typo"}), "body"),
        (json!({"actor": "root"}), "body"),
        (json!({}), "update"),
        (json!({"meta": [1, 2]}), "meta"),
        (json!({"meta": {"x": "y".repeat(5000)}}), "meta"),
        (json!({"meta": {"note": key_shaped}}), "meta"),
        (json!({"external_id": key_shaped}), "external_id"),
        (json!({"roles": []}), "role"),
    ] {
        let answer = api.call(&alice, "PATCH", &path, Some(body.clone()));
        let error = answer.error(StatusCode::BAD_REQUEST, "invalid_input");
        assert_eq!(error["field"], field, "{body}: {error}");
        assert_unquoted(&[&answer], &[key_shaped]);
    }
    let answer = api.call(&alice, "PATCH", &path, Some(json!({"nmae": "typo"})));
    assert!(
        answer.body.contains("nmae"),
        "the unknown field is named: {answer:?}"
    );
    let answer = api.call(&alice, "PATCH", &path, Some(json!({"name": "renamed"})));
    answer.error(StatusCode::CONFLICT, "state_unchanged");
    api.call(&bob, "PATCH", &path, Some(json!({"name": "mine"})))
        .denied("not_owner");
    let after: Vec<Value> = api
        .get(&alice, "/v1/audit?unpaged=true")
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(after.len(), before.lines().count(), "nothing written");
    let last = after.last().unwrap();
    assert_eq!(last["kind"], "updated");
    assert!(last["via"].is_string(), "through alice's admin key: {last}");
    assert_eq!(
        last["changes"],
        json!({"name": "renamed", "roles": ["bot", "billing"], "meta": null})
    );
}
