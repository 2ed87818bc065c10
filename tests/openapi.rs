//! The admin API's OpenAPI document (`GET /v1/openapi.json`) against the server that
//! answers it: the binary on a free loopback port. Every documented operation is a route
//! that authenticates; every route takes exactly the query parameters its document lists;
//! every error answer has the documented shape. (Schemathesis, in `tests/contract/run.sh`,
//! then searches the whole document against a live server.)

#![allow(clippy::unwrap_used)]

#[path = "support/served.rs"]
mod served;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use served::{Served, keyledger};

/// One HTTP/1.1 exchange on a connection of its own: status and body.
fn call(addr: SocketAddr, method: &str, path: &str, key: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let key = key.map(|k| format!("x-api-key: {k}\r\n")).unwrap_or_default();
    let length = if matches!(method, "GET" | "DELETE") {
        ""
    } else {
        "content-length: 0\r\n"
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: test\r\n{key}{length}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// A store with an admin key, served; the key's secret.
fn served() -> (TempDir, Served, String) {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("keys.db");
    let out = keyledger(&db)
        .args([
            "create",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            "--name",
            "api",
            "--role",
            "super-admin",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let server = Served::start(&db, &[]);
    (dir, server, key)
}

fn document(addr: SocketAddr) -> Value {
    let (status, content_type, body) = call(addr, "GET", "/v1/openapi.json", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "application/json");
    serde_json::from_str(&body).unwrap()
}

/// The document's operations: (method, path template).
fn operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            ops.push((method.to_uppercase(), path.clone()));
        }
    }
    ops.sort();
    ops
}

/// A path template made a request path: a key id that names no key, a person who is no one.
fn concrete(path: &str) -> String {
    path.replace("{id}", "00000000000000aa")
        .replace("{actor}", "nobody")
}

#[test]
fn the_document_is_openapi_3_1_and_lists_every_admin_route_each_of_which_authenticates() {
    let (_dir, server, key) = served();
    let doc = document(server.addr);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    let ops = operations(&doc);
    let listed: Vec<String> = ops.iter().map(|(m, p)| format!("{m} {p}")).collect();
    // The admin API as the README and the command line's --server promise it.
    for promised in [
        "GET /v1/keys",
        "POST /v1/keys",
        "POST /v1/keys/import",
        "GET /v1/keys/{id}",
        "PATCH /v1/keys/{id}",
        "DELETE /v1/keys/{id}",
        "POST /v1/keys/{id}/whitelist",
        "DELETE /v1/keys/{id}/whitelist",
        "PUT /v1/keys/{id}/limits",
        "PUT /v1/keys/{id}/credits",
        "POST /v1/keys/{id}/credits/add",
        "GET /v1/keys/{id}/usage",
        "POST /v1/keys/{id}/roll",
        "POST /v1/keys/{id}/disable",
        "POST /v1/keys/{id}/enable",
        "POST /v1/actors/{actor}/revoke",
        "GET /v1/audit",
        "GET /v1/whoami",
        "GET /v1/fleet",
    ] {
        assert!(
            listed.contains(&promised.to_owned()),
            "{promised} is not in {listed:?}"
        );
    }
    assert_eq!(listed.len(), 19, "{listed:?}");
    for (method, path) in &ops {
        // Each is a route of the server (not the 404 of no route, nor the 405 of another
        // method) that wants an admin key before anything else, as the document says.
        let (status, content_type, body) = call(server.addr, method, &concrete(path), None);
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert_eq!(content_type, "application/json");
        let responses = &doc["paths"][path][method.to_lowercase()]["responses"];
        assert!(
            responses.get("401").is_some(),
            "{method} {path} does not document its 401"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["name"],
        "x-api-key"
    );
    // A HEAD is its GET without the body, for a client as for the server.
    for path in ["/v1/keys", "/v1/audit", "/v1/whoami", "/v1/keys/00000000000000aa"] {
        let (status, _, body) = call(server.addr, "HEAD", path, Some(&key));
        assert!(status < 500, "HEAD {path}: {status} {body}");
    }
    // A route the document does not list is not served.
    assert_eq!(call(server.addr, "PUT", "/v1/keys/00000000000000aa", None).0, 405);
    assert_eq!(
        call(server.addr, "GET", "/v1/keys/00000000000000aa/history", None).0,
        404
    );
}

#[test]
fn each_route_takes_exactly_the_query_parameters_its_document_lists() {
    let (_dir, server, key) = served();
    let doc = document(server.addr);
    for (method, path) in operations(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let documented: Vec<&str> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let target = format!("{}?undocumented=1", concrete(&path));
        let (status, _, body) = call(server.addr, &method, &target, Some(&key));
        assert_eq!(status, 400, "{method} {target}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["field"], "query", "{method} {target}: {body}");
        let message = error["message"].as_str().unwrap();
        if documented.is_empty() {
            assert!(message.contains("takes none"), "{method} {path}: {message}");
        } else {
            let known = message.split("(known: ").nth(1).unwrap().trim_end_matches(')');
            let known: Vec<&str> = known.split(", ").collect();
            assert_eq!(known, documented, "{method} {path}");
        }
    }
}

#[test]
fn an_error_answer_has_the_documented_error_shape_and_a_status_the_operation_lists() {
    let (_dir, server, key) = served();
    let doc = document(server.addr);
    let shape = &doc["components"]["schemas"]["ErrorJson"];
    let required: Vec<&str> = shape["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(required, ["error"]);
    for (method, path, expect) in [
        ("GET", "/v1/keys/00000000000000aa", 404),
        ("GET", "/v1/keys/not-an-id", 400),
        ("GET", "/v1/keys?limit=0", 400),
        ("GET", "/v1/fleet", 404),
        ("POST", "/v1/keys/00000000000000aa/disable", 404),
    ] {
        let (status, content_type, body) = call(server.addr, method, path, Some(&key));
        assert_eq!(status, expect, "{method} {path}: {body}");
        assert_eq!(content_type, "application/json");
        let error: Value = serde_json::from_str(&body).unwrap();
        let properties = shape["properties"].as_object().unwrap();
        for field in error.as_object().unwrap().keys() {
            assert!(
                properties.contains_key(field),
                "{field} is not in ErrorJson: {body}"
            );
        }
        let template = path
            .split('?')
            .next()
            .unwrap()
            .replace("00000000000000aa", "{id}")
            .replace("not-an-id", "{id}");
        let responses = &doc["paths"][&template][method.to_lowercase()]["responses"];
        assert!(
            responses.get(expect.to_string()).is_some(),
            "{method} {template} does not document its {expect}"
        );
    }
}
