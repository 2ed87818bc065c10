//! `keyledger serve`'s log lines and probes, over real loopback HTTP: a representative
//! session logged as JSON (every line parses, decision lines carry their fields, and no line
//! holds a secret or anything shaped like a key), accepted `/auth` lines off by default and
//! sampled on request, a filter that does not parse, and `/livez` and `/readyz`.

#![allow(clippy::unwrap_used)]

#[path = "support/served.rs"]
mod served;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tempfile::TempDir;

use served::{Served, keyledger};

/// One request on a connection of its own: the status and the body (not de-chunked).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        request.push_str("Content-Type: application/json\r\n");
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// One `/auth` request: its path, its headers, the status it gets and its reason (`None`
/// for a pass).
type AuthCase<'a> = (String, Vec<(&'a str, &'a str)>, u16, Option<&'a str>);

/// A super-admin key for `root`, made with the command line: its id and secret.
fn root_key(db: &Path) -> (String, String) {
    let out = keyledger(db)
        .args(["create", "--actor", "root", "--actor-role", "super-admin"])
        .args([
            "--name",
            "root-admin",
            "--role",
            "super-admin",
            "--ip",
            "127.0.0.1",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

/// `secret` with one character of its body changed: the typo a user makes.
fn typo(secret: &str) -> String {
    let mut bytes = secret.as_bytes().to_vec();
    bytes[10] = if bytes[10] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

/// Stops `served` and returns its standard error, a line at a time.
fn stop(mut served: Served) -> Vec<String> {
    assert!(served.terminate().unwrap().success());
    served.errors().lines().map(str::to_owned).collect()
}

/// The decision lines of `kind` (`auth`, `admin`) among JSON lines.
fn decisions<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["target"] == "keyledger::decision" && l["kind"] == kind)
        .collect()
}

#[test]
fn a_serve_session_logged_as_json_names_every_decision_and_never_a_secret() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("keys.db");
    let (root_id, root) = root_key(&db);
    let served = Served::start(&db, &["--log-format", "json", "--log-auth", "all"]);
    let addr = served.addr;
    let as_root = [("x-api-key", root.as_str())];

    let (status, body) = http(
        addr,
        "POST",
        "/v1/keys",
        &as_root,
        &json!({"name": "billing", "roles": ["bot"], "ips": ["127.0.0.1"]}).to_string(),
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let (id, secret) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    let mistyped = typo(&secret);
    let too_long = format!("{secret}x");
    let bearer = format!("Bearer {secret}");
    // (path, headers, status, reason: None for a pass)
    let auths: Vec<AuthCase<'_>> = vec![
        ("/auth".into(), vec![("x-api-key", &secret)], 200, None),
        (
            "/auth".into(),
            vec![("authorization", &bearer)],
            401,
            Some("header_missing"),
        ),
        (
            "/auth".into(),
            vec![("x-api-key", &mistyped)],
            401,
            Some("malformed_checksum"),
        ),
        (
            "/auth".into(),
            vec![("x-api-key", &too_long)],
            401,
            Some("malformed_length"),
        ),
        (
            "/auth?role=admin".into(),
            vec![("x-api-key", &secret)],
            403,
            Some("role_missing"),
        ),
        // A key in the path and the query too: never echoed.
        (
            format!("/auth/{secret}?key={secret}"),
            vec![("x-api-key", &secret)],
            200,
            None,
        ),
    ];
    for (path, headers, status, _) in &auths {
        assert_eq!(http(addr, "GET", path, headers, "").0, *status, "{path}");
    }
    // Admin requests with bad admin keys: a plain key, a typo, a key in the path.
    assert_eq!(
        http(addr, "GET", "/v1/keys", &[("x-api-key", &secret)], "").0,
        403
    );
    assert_eq!(
        http(addr, "GET", "/v1/keys", &[("x-api-key", &typo(&root))], "").0,
        401
    );
    assert_eq!(
        http(addr, "GET", &format!("/v1/keys/{secret}"), &as_root, "").0,
        400
    );
    assert_eq!(
        http(addr, "DELETE", &format!("/v1/keys/{id}"), &as_root, "").0,
        200
    );
    assert_eq!(http(addr, "GET", "/auth", &[("x-api-key", &secret)], "").0, 401);
    assert_eq!(http(addr, "GET", "/v1/audit", &as_root, "").0, 200);

    let lines = stop(served);
    assert!(!lines.is_empty());
    let secrets = [
        root.as_str(),
        &root[4..36],
        &typo(&root),
        &secret,
        &secret[4..36],
        &mistyped,
        &too_long,
    ];
    let mut parsed = Vec::new();
    for line in &lines {
        assert!(!line.contains(keyledger::KEY_PREFIX), "key-shaped: {line}");
        assert_eq!(keyledger::redact_keys(line), line.as_str(), "key-shaped: {line}");
        for s in secrets {
            assert!(!line.contains(s), "a secret in: {line}");
        }
        let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for field in ["timestamp", "level", "target", "message"] {
            assert!(value.get(field).is_some(), "no {field}: {line}");
        }
        parsed.push(value);
    }

    let auth = decisions(&parsed, "auth");
    assert_eq!(auth.len(), auths.len() + 1, "{auth:#?}");
    for (line, (path, _, status, reason)) in auth.iter().zip(&auths) {
        assert_eq!(line["status"], *status, "{path}: {line}");
        assert_eq!(line["client"], "127.0.0.1", "{line}");
        assert!(line["latency_us"].is_u64(), "{line}");
        match reason {
            None => {
                assert_eq!(line["outcome"], "accepted", "{line}");
                assert_eq!(line["key_id"], id.as_str(), "{line}");
            }
            Some(reason) => {
                assert_eq!(line["outcome"], "refused", "{line}");
                assert_eq!(line["reason"], *reason, "{line}");
            }
        }
    }
    assert_eq!(
        auth[4]["key_id"],
        id.as_str(),
        "a refusal of a known key names it"
    );
    assert!(
        auth[2].get("key_id").is_none(),
        "a typo names no key: {}",
        auth[2]
    );
    assert_eq!(auth[6]["reason"], "unknown_key", "deleted: {}", auth[6]);

    let admin = decisions(&parsed, "admin");
    let summary: Vec<(Value, Value, Value, Value, Value)> = admin
        .iter()
        .map(|l| {
            let get = |f: &str| l.get(f).cloned().unwrap_or(Value::Null);
            (
                get("method"),
                get("route"),
                get("status"),
                get("actor"),
                get("error"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                json!("POST"),
                json!("/v1/keys"),
                json!(201),
                json!("root"),
                Value::Null
            ),
            (
                json!("GET"),
                json!("/v1/keys"),
                json!(403),
                Value::Null,
                json!("permission_denied")
            ),
            (
                json!("GET"),
                json!("/v1/keys"),
                json!(401),
                Value::Null,
                json!("unauthorized")
            ),
            (
                json!("GET"),
                json!("/v1/keys/{id}"),
                json!(400),
                json!("root"),
                json!("invalid_input")
            ),
            (
                json!("DELETE"),
                json!("/v1/keys/{id}"),
                json!(200),
                json!("root"),
                Value::Null
            ),
            (
                json!("GET"),
                json!("/v1/audit"),
                json!(200),
                json!("root"),
                Value::Null
            ),
        ]
    );
    assert_eq!(admin[0]["via"], root_id.as_str());
    assert_eq!(admin[0]["outcome"], "ok");
    assert_eq!(admin[1]["via"], id.as_str(), "the plain key that was no admin's");
    assert_eq!(admin[2]["reason"], "malformed_checksum");
    assert!(admin.iter().all(|l| l["latency_us"].is_u64()));
}

#[test]
fn accepted_auth_lines_are_off_by_default_and_one_in_n_when_sampled() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("keys.db");
    let (_, root) = root_key(&db);
    let pass = |addr| assert_eq!(http(addr, "GET", "/auth", &[("x-api-key", &root)], "").0, 200);

    let served = Served::start(&db, &[]);
    for _ in 0..3 {
        pass(served.addr);
    }
    assert_eq!(http(served.addr, "GET", "/auth", &[], "").0, 401);
    let lines = stop(served);
    let auth: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("keyledger::decision"))
        .collect();
    assert_eq!(auth.len(), 1, "only the refusal, as text: {lines:?}");
    assert!(
        !auth[0].starts_with('{') && auth[0].contains("header_missing"),
        "{}",
        auth[0]
    );

    let served = Served::start(&db, &["--log-format", "json", "--log-auth-sample", "2"]);
    for _ in 0..4 {
        pass(served.addr);
    }
    let lines = stop(served);
    let parsed: Vec<Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    let accepted = decisions(&parsed, "auth")
        .into_iter()
        .filter(|l| l["outcome"] == "accepted")
        .count();
    assert_eq!(accepted, 2, "{lines:?}");
}

#[test]
fn a_log_filter_that_does_not_parse_is_a_usage_error_before_serving() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("keys.db");
    root_key(&db);
    let out = keyledger(&db)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-filter",
            "keyledger=loud",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "nothing served: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--log-filter"),
        "{out:?}"
    );
}

#[test]
fn a_single_host_is_live_and_ready_while_its_store_is_open() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("keys.db");
    root_key(&db);
    let served = Served::start(&db, &[]);
    let (status, body) = http(served.addr, "GET", "/livez", &[], "");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"live","last_seq":1}"#)
    );
    let (status, body) = http(served.addr, "GET", "/readyz", &[], "");
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"ready","last_seq":1}"#)
    );
    assert_eq!(http(served.addr, "POST", "/readyz", &[], "").0, 405);
    stop(served);
}
