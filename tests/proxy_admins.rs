//! Admins signed in by the platform's own proxy instead of an admin key (`serve
//! --admin-user-header X-Forwarded-User --admin-user alice=admin`): a real nginx with HTTP
//! basic auth in front of `keyledger serve` names the person; keyledger believes it from
//! that proxy only, only with the page's CSRF header and not from another site, maps it to
//! an actor with its role, and records what they do as them, with no key.

#![allow(clippy::unwrap_used)]

#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/served.rs"]
mod served;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use served::{Served, keyledger};

/// base64 of `alice:wonderland`, `bob:builder` and `root:rootpw`: the people nginx knows.
const ALICE: &str = "YWxpY2U6d29uZGVybGFuZA==";
const BOB: &str = "Ym9iOmJ1aWxkZXI=";
const ROOT: &str = "cm9vdDpyb290cHc=";

/// One HTTP/1.1 exchange: status and body.
fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: keys.example\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    ));
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned())
}

/// As [`call`], from the loopback address `from` (a GET with no body).
fn call_from(
    from: &str,
    to: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let std_stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(from.parse().unwrap(), 0)).unwrap();
        socket.connect(to).await.unwrap().into_std().unwrap()
    });
    std_stream.set_nonblocking(false).unwrap();
    let mut stream = std_stream;
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: keys.example\r\nconnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (head.split(' ').nth(1).unwrap().parse().unwrap(), body.to_owned())
}

struct Setup {
    _dir: TempDir,
    served: Served,
    proxy: nginx::Nginx,
    root_key: String,
}

fn setup() -> Setup {
    nginx::binary();
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
            "root key",
            "--role",
            "super-admin",
            "--ip",
            "127.0.0.1",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let root_key = serde_json::from_slice::<Value>(&out.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let served = Served::start(
        &db,
        &[
            // The network trusted for X-Forwarded-For is wide; only nginx's own address
            // may name admins.
            "--trusted-proxy",
            "127.0.0.0/8",
            "--admin-proxy",
            "127.0.0.2",
            "--admin-user-header",
            "X-Forwarded-User",
            "--admin-user",
            "alice=admin",
            "--admin-user",
            "root=super-admin",
        ],
    );
    let users = dir.path().join("htpasswd");
    std::fs::write(
        &users,
        "alice:{PLAIN}wonderland\nbob:{PLAIN}builder\nroot:{PLAIN}rootpw\n",
    )
    .unwrap();
    let keyledger = served.addr;
    let proxy = nginx::Nginx::start_http(&dir.path().join("nginx"), |port| {
        format!(
            "    server {{
        listen 127.0.0.1:{port};
        location / {{
            auth_basic \"keys\";
            auth_basic_user_file {users};
            proxy_bind 127.0.0.2;
            proxy_pass http://{keyledger};
            proxy_set_header X-Forwarded-User $remote_user;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Authorization \"\";
        }}
    }}",
            users = users.display()
        )
    });
    Setup {
        _dir: dir,
        served,
        proxy,
        root_key,
    }
}

const PAGE: (&str, &str) = ("x-keyledger-csrf", "1");

fn basic(user: &str) -> String {
    format!("Basic {user}")
}

#[test]
fn an_admin_named_by_the_proxy_acts_as_that_person_under_the_admin_rules_with_no_key() {
    let s = setup();
    let alice = basic(ALICE);
    let as_alice = [("authorization", alice.as_str()), PAGE];
    let (status, body) = call(s.proxy.addr, "GET", "/v1/whoami", &as_alice, "");
    assert_eq!(status, 200, "{body}\n{}", s.proxy.error_log());
    assert_eq!(body, r#"{"actor":"alice","actor_role":"admin","key_id":null}"#);

    let (status, body) = call(
        s.proxy.addr,
        "POST",
        "/v1/keys",
        &as_alice,
        r#"{"name": "alice's bot", "roles": ["bot"], "ips": ["10.0.0.0/8"]}"#,
    );
    assert_eq!(status, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(created["created_by"], "alice");
    assert_eq!(created["created_by_role"], "admin");
    let id = created["id"].as_str().unwrap();

    // The admin rules are alice's: she may not delete root's key.
    let root_key_id = {
        let (_, body) = call(
            s.served.addr,
            "GET",
            "/v1/keys?limit=1",
            &[("x-api-key", &s.root_key)],
            "",
        );
        let page: Value = serde_json::from_str(&body).unwrap();
        page["keys"][0]["id"].as_str().unwrap().to_owned()
    };
    let (status, body) = call(
        s.proxy.addr,
        "DELETE",
        &format!("/v1/keys/{root_key_id}"),
        &as_alice,
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("permission_denied"), "{body}");

    // A client that names someone else itself is overwritten by nginx: still alice.
    let forged = [
        ("authorization", alice.as_str()),
        PAGE,
        ("x-forwarded-user", "root"),
    ];
    let (status, body) = call(s.proxy.addr, "GET", "/v1/whoami", &forged, "");
    assert_eq!(
        (status, body.contains(r#""actor":"alice""#)),
        (200, true),
        "{body}"
    );

    // The audit names alice, through no key.
    let (status, body) = call(s.proxy.addr, "GET", &format!("/v1/audit?key={id}"), &as_alice, "");
    assert_eq!(status, 200, "{body}");
    let entry = &serde_json::from_str::<Value>(&body).unwrap()["entries"][0];
    assert_eq!(
        (entry["actor"].as_str(), entry["kind"].as_str()),
        (Some("alice"), Some("created"))
    );
    assert_eq!(entry["via"], Value::Null, "{entry}");

    // root, a super admin by the table, may.
    let root = basic(ROOT);
    let as_root = [("authorization", root.as_str()), PAGE];
    let (status, body) = call(s.proxy.addr, "DELETE", &format!("/v1/keys/{id}"), &as_root, "");
    assert_eq!(status, 200, "{body}");
}

#[test]
fn the_proxy_s_naming_is_refused_from_anyone_else_without_the_page_s_header_or_from_another_site() {
    let s = setup();
    // Straight to keyledger from 127.0.0.1, a trusted proxy for X-Forwarded-For but not the
    // admin proxy: refused, not ignored.
    let (status, body) = call(
        s.served.addr,
        "GET",
        "/v1/whoami",
        &[("x-forwarded-user", "root"), PAGE],
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("proxy_identity_untrusted"), "{body}");

    let alice = basic(ALICE);
    // A forged cross-site request carries the proxy's session, but not the page's header.
    let (status, body) = call(
        s.proxy.addr,
        "POST",
        "/v1/keys",
        &[("authorization", alice.as_str())],
        r#"{"name": "csrf", "roles": ["bot"]}"#,
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("csrf_refused"), "{body}");
    let (status, body) = call(
        s.proxy.addr,
        "GET",
        "/v1/whoami",
        &[
            ("authorization", alice.as_str()),
            PAGE,
            ("sec-fetch-site", "cross-site"),
        ],
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("csrf_refused"), "{body}");

    // A proxy that appends the header instead of replacing it passes the client's forged
    // name first: two values, or a list, name no one.
    let (status, body) = call(s.served.addr, "GET", "/v1/whoami", &[PAGE], "");
    assert_eq!(status, 401, "no key, no name: {body}");
    // (Sent as such a proxy would, from the admin proxy's own address.)
    for named in [
        &[("x-forwarded-user", "root"), ("x-forwarded-user", "alice")][..],
        &[("x-forwarded-user", "root, alice")],
    ] {
        let mut headers = named.to_vec();
        headers.push(PAGE);
        let (status, body) = call_from("127.0.0.2", s.served.addr, "GET", "/v1/whoami", &headers);
        assert_eq!(status, 403, "{named:?}: {body}");
        assert!(body.contains("proxy_identity_ambiguous"), "{body}");
    }
    let (status, body) = call_from(
        "127.0.0.2",
        s.served.addr,
        "GET",
        "/v1/whoami",
        &[("x-forwarded-user", "alice"), PAGE],
    );
    assert_eq!(
        (status, body.contains(r#""actor":"alice""#)),
        (200, true),
        "one name, once: {body}"
    );

    // Someone the proxy knows but the table does not: not an admin.
    let bob = basic(BOB);
    let (status, body) = call(
        s.proxy.addr,
        "GET",
        "/v1/whoami",
        &[("authorization", bob.as_str()), PAGE],
        "",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("not_an_admin"), "{body}");

    // Nothing of it was written: only root's key exists.
    let (_, body) = call(
        s.served.addr,
        "GET",
        "/v1/keys",
        &[("x-api-key", &s.root_key)],
        "",
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // An admin key still works as before, alongside.
    let (status, _) = call(
        s.served.addr,
        "GET",
        "/v1/whoami",
        &[("x-api-key", &s.root_key)],
        "",
    );
    assert_eq!(status, 200);
}
