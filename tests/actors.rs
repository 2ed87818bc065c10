//! Admin keys that are people, over real loopback HTTP (`keyledger serve` spawned with a
//! store of its own) and through the command line: an admin key acts as the person it was
//! made for, with that person's keys and no one else's; revoking a person stops every
//! admin key acting as them at once; a secret the log ever held is never adopted again,
//! and the refusal does not say whether it is live.

#![allow(clippy::unwrap_used)]

#[path = "support/served.rs"]
mod served;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use sha2::Digest;
use tempfile::TempDir;

use served::{Served, keyledger};

/// Runs the command line on `db` and returns its output (whatever its exit).
fn run(db: &Path, args: &[&str]) -> Output {
    keyledger(db).args(args).stdin(Stdio::null()).output().unwrap()
}

/// Runs the command line on `db`; panics unless it exits 0.
fn cli(db: &Path, args: &[&str]) -> Output {
    let out = run(db, args);
    assert!(out.status.success(), "keyledger {args:?}: {out:?}");
    out
}

/// A key made as root (super admin) with the command line: its id and secret.
fn root_key(db: &Path, name: &str, roles: &[&str]) -> (String, String) {
    let mut args = vec![
        "create",
        "--actor",
        "root",
        "--actor-role",
        "super-admin",
        "--name",
        name,
        "--json",
    ];
    for role in roles {
        args.extend(["--role", role]);
    }
    let created: Value = serde_json::from_slice(&cli(db, &args).stdout).unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

/// One HTTP/1.1 answer: its status and body (chunks joined).
#[derive(Debug)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// Asserts the status; returns the JSON body.
    fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        self.json()
    }

    /// Asserts a refusal by the access rules, for `reason`.
    fn denied(&self, reason: &str) -> Value {
        let body = self.expect(403);
        assert_eq!(
            (body["error"].as_str(), body["reason"].as_str()),
            (Some("permission_denied"), Some(reason)),
            "{self:?}"
        );
        body
    }
}

/// One request on a connection of its own, with `key` in `x-api-key`.
fn call(addr: SocketAddr, key: &str, method: &str, path: &str, body: &str) -> Answer {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nx-api-key: {key}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let raw = String::from_utf8(raw).unwrap();
    let (head, rest) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head
        .lines()
        .any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Answer { status, body }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// A served store with root's super-admin key and root's `prod-billing` key, made with
/// the command line before serving.
struct Fixture {
    _dir: TempDir,
    served: Served,
    root: String,
    billing_id: String,
    billing: String,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new().unwrap();
        let db = dir.path().join("db");
        let (_, root) = root_key(&db, "root admin", &["super-admin"]);
        let (billing_id, billing) = root_key(&db, "prod-billing", &["billing"]);
        let served = Served::start(&db, &[]);
        Fixture {
            _dir: dir,
            served,
            root,
            billing_id,
            billing,
        }
    }

    fn call(&self, key: &str, method: &str, path: &str, body: &str) -> Answer {
        call(self.served.addr, key, method, path, body)
    }

    /// A key made over HTTP with `key`: its JSON answer (with the secret in `key`).
    fn create(&self, key: &str, spec: Value) -> Value {
        self.call(key, "POST", "/v1/keys", &spec.to_string()).expect(201)
    }

    /// Whether `key` passes forward-auth.
    fn verifies(&self, key: &str) -> bool {
        self.call(key, "GET", "/auth", "").status == 200
    }

    /// Who an admin key acts as, or the status it gets.
    fn whoami(&self, key: &str) -> Result<(String, String), u16> {
        let answer = self.call(key, "GET", "/v1/whoami", "");
        match answer.status {
            200 => {
                let me = answer.json();
                Ok((
                    me["actor"].as_str().unwrap().to_owned(),
                    me["actor_role"].as_str().unwrap().to_owned(),
                ))
            }
            status => Err(status),
        }
    }

    fn key(&self, id: &str) -> Value {
        self.call(&self.root, "GET", &format!("/v1/keys/{id}"), "")
            .expect(200)
    }

    /// Root mints admin keys for carol and dave: their JSON answers.
    fn carol_and_dave(&self) -> (Value, Value) {
        let carol = self.create(
            &self.root,
            json!({"name": "carol admin", "roles": ["admin"], "actor": "carol"}),
        );
        let dave = self.create(
            &self.root,
            json!({"name": "dave admin", "roles": ["admin"], "actor": "dave"}),
        );
        (carol, dave)
    }
}

fn secret(key: &Value) -> &str {
    key["key"].as_str().unwrap()
}

fn id(key: &Value) -> &str {
    key["id"].as_str().unwrap()
}

#[test]
fn carol_cannot_roll_daves_admin_key_nor_touch_roots_keys_and_gets_no_secret() {
    let f = Fixture::new();
    let (carol, dave) = f.carol_and_dave();
    assert_eq!(
        (carol["created_by"].as_str(), carol["acts_for"].as_str()),
        (Some("root"), Some("carol"))
    );
    // The attack first, as an attacker would: roll dave's key to read its new secret.
    let dave_id = id(&dave);
    let roll = f.call(secret(&carol), "POST", &format!("/v1/keys/{dave_id}/roll"), "{}");
    assert!(!roll.body.contains("klk_"), "no secret for carol: {roll:?}");
    let body = roll.denied("not_owner");
    assert!(body.get("key").is_none(), "{roll:?}");
    assert_eq!(
        f.whoami(secret(&dave)),
        Ok(("dave".into(), "admin".into())),
        "dave is not locked out"
    );
    assert_eq!(f.whoami(secret(&carol)), Ok(("carol".into(), "admin".into())));

    let billing = &f.billing_id;
    f.call(secret(&carol), "DELETE", &format!("/v1/keys/{billing}"), "")
        .denied("not_owner");
    for (method, path, body) in [
        ("POST", format!("/v1/keys/{billing}/disable"), String::new()),
        (
            "POST",
            format!("/v1/keys/{billing}/whitelist"),
            r#"{"ips": ["10.0.0.1"]}"#.to_owned(),
        ),
        ("POST", format!("/v1/keys/{dave_id}/disable"), String::new()),
        ("DELETE", format!("/v1/keys/{dave_id}"), String::new()),
    ] {
        f.call(secret(&carol), method, &path, &body).denied("not_owner");
    }
    assert_eq!(f.key(billing)["status"], "active");
    assert_eq!(f.key(billing)["whitelist"], json!([]));
    assert!(f.verifies(&f.billing));
    assert_eq!(f.key(dave_id)["status"], "active");

    // An admin may make admin keys only for herself, and never a super admin's.
    f.call(
        secret(&carol),
        "POST",
        "/v1/keys",
        &json!({"name": "for dave", "roles": ["admin"], "actor": "dave"}).to_string(),
    )
    .denied("grants_for_another");
    f.call(
        secret(&carol),
        "POST",
        "/v1/keys",
        &json!({"name": "up", "roles": ["super-admin"], "actor": "carol"}).to_string(),
    )
    .denied("grants_super_admin");
    // A person is for admin keys only.
    let plain = f.call(
        &f.root,
        "POST",
        "/v1/keys",
        &json!({"name": "bot", "roles": ["bot"], "actor": "carol"}).to_string(),
    );
    assert_eq!(plain.expect(400)["field"], "actor");
}

#[test]
fn the_trail_names_the_person_and_the_key_they_came_through() {
    let f = Fixture::new();
    let (carol, dave) = f.carol_and_dave();
    let dave_id = id(&dave);
    f.call(secret(&carol), "DELETE", &format!("/v1/keys/{dave_id}"), "")
        .denied("not_owner");
    f.call(secret(&dave), "POST", "/v1/actors/carol/revoke", "")
        .denied("revokes_person");
    let trail = lines(&f.call(&f.root, "GET", "/v1/audit?refused=true&unpaged=true", ""));
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert_eq!(
        (
            trail[0]["actor"].as_str(),
            trail[0]["via"].as_str(),
            trail[0]["action"].as_str()
        ),
        (Some("carol"), Some(id(&carol)), Some("delete"))
    );
    assert_eq!(trail[0]["key_id"].as_str(), Some(dave_id));
    assert_eq!(
        (
            trail[1]["actor"].as_str(),
            trail[1]["via"].as_str(),
            trail[1]["action"].as_str()
        ),
        (Some("dave"), Some(dave_id), Some("revoke_actor"))
    );
    assert_eq!(
        (trail[1]["reason"].as_str(), trail[1]["person"].as_str()),
        (Some("revokes_person"), Some("carol"))
    );
    assert_eq!(f.whoami(secret(&carol)), Ok(("carol".into(), "admin".into())));
}

#[test]
fn a_key_carol_mints_for_herself_is_hers_and_dies_when_root_revokes_her() {
    let f = Fixture::new();
    let (carol, dave) = f.carol_and_dave();
    let spare = f.create(secret(&carol), json!({"name": "carol spare", "roles": ["admin"]}));
    assert_eq!(
        (spare["created_by"].as_str(), spare["acts_for"].as_str()),
        (Some("carol"), Some("carol"))
    );
    let service = f.create(secret(&spare), json!({"name": "carol's bot", "roles": ["bot"]}));
    assert_eq!(service["created_by"], "carol");
    let created = lines(&f.call(&f.root, "GET", "/v1/audit?kind=created&unpaged=true", ""));
    let via_spare = created.iter().find(|e| e["key_id"] == service["id"]).unwrap();
    assert_eq!(
        (via_spare["actor"].as_str(), via_spare["via"].as_str()),
        (Some("carol"), Some(id(&spare)))
    );

    let revoked = f.call(&f.root, "POST", "/v1/actors/carol/revoke", "").expect(200);
    let mut expected = vec![id(&carol), id(&spare)];
    expected.sort_unstable();
    let mut got: Vec<&str> = revoked["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, expected, "{revoked}");
    assert_eq!(revoked["with_keys"], false);
    // Applied before the answer: both stop at once, and their records say by whom.
    assert_eq!(f.whoami(secret(&carol)), Err(401));
    assert_eq!(f.whoami(secret(&spare)), Err(401));
    let spare_now = f.key(id(&spare));
    assert_eq!(
        (spare_now["status"].as_str(), spare_now["deleted_by"].as_str()),
        (Some("deleted"), Some("root"))
    );
    // What carol made for services keeps working; dave is untouched.
    assert!(f.verifies(secret(&service)));
    assert_eq!(f.whoami(secret(&dave)), Ok(("dave".into(), "admin".into())));

    let audit = lines(&f.call(&f.root, "GET", "/v1/audit?kind=actor_revoked&unpaged=true", ""));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(
        (
            audit[0]["person"].as_str(),
            audit[0]["key_id"].clone(),
            audit[0]["actor"].as_str()
        ),
        (Some("carol"), Value::Null, Some("root"))
    );
    // Time travel: just before the revocation the spare key stood; right after, it did not.
    let seq = audit[0]["seq"].as_u64().unwrap();
    let stood = |at: u64| {
        lines(&f.call(&f.root, "GET", &format!("/v1/audit?at={at}&unpaged=true"), ""))
            .iter()
            .find(|k| k["id"] == spare["id"])
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (stood(seq - 1).as_str(), stood(seq).as_str()),
        ("active", "deleted")
    );
}

#[test]
fn revoking_a_person_stops_every_admin_key_at_once_and_with_keys_their_service_keys_too() {
    let f = Fixture::new();
    let (carol, _) = f.carol_and_dave();
    let second = f.create(
        &f.root,
        json!({"name": "carol laptop", "roles": ["admin"], "actor": "carol"}),
    );
    let service = f.create(secret(&carol), json!({"name": "carol's bot", "roles": ["bot"]}));
    let revoked = f.call(&f.root, "POST", "/v1/actors/carol/revoke", "").expect(200);
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 2, "{revoked}");
    assert_eq!(f.whoami(secret(&carol)), Err(401));
    assert_eq!(f.whoami(secret(&second)), Err(401));
    assert!(f.verifies(secret(&service)), "service keys stay unless asked");

    let again = f
        .call(&f.root, "POST", "/v1/actors/carol/revoke?with_keys=true", "")
        .expect(200);
    assert_eq!(again["revoked"], json!([id(&service)]));
    assert!(!f.verifies(secret(&service)));
    let nothing = f.call(
        &f.root,
        "POST",
        "/v1/actors/carol/revoke",
        r#"{"with_keys": true}"#,
    );
    assert_eq!(nothing.expect(409)["error"], "nothing_to_revoke");
    // Root's own keys were never carol's.
    assert!(f.verifies(&f.billing));
}

#[test]
fn only_a_super_admin_may_revoke_a_person() {
    let f = Fixture::new();
    let (carol, dave) = f.carol_and_dave();
    f.call(secret(&carol), "POST", "/v1/actors/dave/revoke", "")
        .denied("revokes_person");
    f.call(
        secret(&carol),
        "POST",
        "/v1/actors/root/revoke?with_keys=true",
        "",
    )
    .denied("revokes_person");
    assert_eq!(f.whoami(secret(&dave)), Ok(("dave".into(), "admin".into())));
    assert!(f.verifies(&f.root) && f.verifies(&f.billing));
    let bad = f.call(&f.root, "POST", "/v1/actors/carol/revoke?with_keys=maybe", "");
    assert_eq!(bad.expect(400)["field"], "with_keys");
    let unknown = f.call(&f.root, "POST", "/v1/actors/nobody/revoke", "");
    assert_eq!(unknown.expect(409)["error"], "nothing_to_revoke");
}

/// The secrets of a live key, a deleted one and a rolled-out one, and of a key adopted by
/// SHA-256 and then deleted, re-imported: one answer for all, which does not say which.
#[test]
fn reimporting_a_live_deleted_or_rolled_out_secret_is_refused_with_the_same_error() {
    let f = Fixture::new();
    let live = f.create(&f.root, json!({"name": "live", "roles": ["bot"]}));
    let deleted = f.create(&f.root, json!({"name": "deleted", "roles": ["bot"]}));
    f.call(&f.root, "DELETE", &format!("/v1/keys/{}", id(&deleted)), "")
        .expect(200);
    let rolled = f.create(&f.root, json!({"name": "rolled", "roles": ["bot"]}));
    f.call(&f.root, "POST", &format!("/v1/keys/{}/roll", id(&rolled)), "{}")
        .expect(200);
    let legacy = "legacy_secret_0000000001";
    let digest = hex(&sha2::Sha256::digest(legacy.as_bytes()));
    let by_sha = json!({"name": "by sha", "roles": ["bot"], "sha256": digest}).to_string() + "\n";
    let adopted = f.call(&f.root, "POST", "/v1/keys/import", &by_sha).expect(201);
    f.call(
        &f.root,
        "DELETE",
        &format!("/v1/keys/{}", adopted[0]["id"].as_str().unwrap()),
        "",
    )
    .expect(200);

    let import = |line: Value| f.call(&f.root, "POST", "/v1/keys/import", &(line.to_string() + "\n"));
    let answers = [
        import(json!({"name": "again", "roles": ["bot"], "key": secret(&live)})),
        import(json!({"name": "again", "roles": ["bot"], "key": secret(&deleted)})),
        import(json!({"name": "again", "roles": ["bot"], "key": secret(&rolled)})),
        import(json!({"name": "again", "roles": ["bot"], "sha256": digest})),
        import(json!({"name": "again", "roles": ["bot"], "key": legacy})),
    ];
    let first = answers[0].expect(409);
    assert_eq!(
        (first["error"].as_str(), first["source"]["error"].as_str()),
        (Some("import_entry"), Some("secret_known"))
    );
    for answer in &answers[1..] {
        assert_eq!(answer.status, 409, "{answer:?}");
        let body = answer.json();
        assert_eq!(
            body["source"], first["source"],
            "one answer for every case: {answer:?}"
        );
        assert_eq!(body["message"], first["message"], "{answer:?}");
    }
    assert!(!f.verifies(secret(&deleted)) && !f.verifies(secret(&rolled)));
    assert_eq!(
        f.call(&f.root, "GET", "/v1/keys?all=true&unpaged=true", "")
            .expect(200)
            .as_array()
            .unwrap()
            .len(),
        6
    );
    // A secret no key ever held is adopted as before.
    import(json!({"name": "fresh", "roles": ["bot"], "key": "legacy_secret_0000000002"})).expect(201);
}

fn lines(answer: &Answer) -> Vec<Value> {
    assert_eq!(answer.status, 200, "{answer:?}");
    answer
        .body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A secret adopted as it is and then deleted cannot come back through a key adopted by
/// its SHA-256 digest (which the store, holding only its own hash, cannot recognise at
/// the import): that key never accepts the retired secret.
#[test]
fn a_retired_adopted_secret_does_not_come_back_through_its_sha256() {
    let f = Fixture::new();
    let legacy = "legacy_secret_0000000007";
    let line = json!({"name": "legacy", "roles": ["bot"], "key": legacy}).to_string() + "\n";
    let adopted = f.call(&f.root, "POST", "/v1/keys/import", &line).expect(201);
    assert!(f.verifies(legacy));
    let id = adopted[0]["id"].as_str().unwrap();
    f.call(&f.root, "DELETE", &format!("/v1/keys/{id}"), "")
        .expect(200);
    let digest = hex(&sha2::Sha256::digest(legacy.as_bytes()));
    let line = json!({"name": "revived?", "roles": ["bot"], "sha256": digest}).to_string() + "\n";
    f.call(&f.root, "POST", "/v1/keys/import", &line).expect(201);
    assert!(!f.verifies(legacy), "the deleted secret stays dead");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A store whose admin key was made without a person (as every admin key was before
/// people): it keeps acting as its creator, and revoking that creator revokes it.
#[test]
fn an_admin_key_without_a_person_keeps_acting_as_its_creator() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = root_key(&db, "root admin", &["super-admin"]);
    let (old_id, old) = root_key(&db, "old admin", &["admin"]);
    let served = Served::start(&db, &[]);
    let addr = served.addr;
    let who = call(addr, &old, "GET", "/v1/whoami", "").expect(200);
    assert_eq!(
        (who["actor"].as_str(), who["actor_role"].as_str()),
        (Some("root"), Some("admin"))
    );
    let shown = call(addr, &root, "GET", &format!("/v1/keys/{old_id}"), "").expect(200);
    assert_eq!(shown["acts_for"], "root");
    let made = call(
        addr,
        &old,
        "POST",
        "/v1/keys",
        r#"{"name": "bot", "roles": ["bot"]}"#,
    )
    .expect(201);
    assert_eq!(made["created_by"], "root");
    // Root's own super-admin key is root's too: revoking root as a person stops both,
    // which is how an operator retires a shared key after moving to named people.
    let revoked = call(addr, &root, "POST", "/v1/actors/root/revoke", "").expect(200);
    assert_eq!(revoked["revoked"].as_array().unwrap().len(), 2, "{revoked}");
    assert_eq!(call(addr, &old, "GET", "/v1/whoami", "").status, 401);
}

/// Over the admin API a super admin cannot make an admin key without naming its person
/// (forgetting would hand out a key acting as the super admin, which could roll every key
/// the super admin made): refused, and nothing written; naming themselves is allowed.
#[test]
fn a_super_admin_must_name_the_person_of_an_admin_key_made_over_the_api() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let (_, root) = root_key(&db, "root admin", &["super-admin"]);
    let served = Served::start(&db, &[]);
    let addr = served.addr;
    let before = call(addr, &root, "GET", "/v1/keys?all=true&unpaged=true", "").expect(200);
    for roles in [r#"["admin"]"#, r#"["bot", "super-admin"]"#] {
        let refused = call(
            addr,
            &root,
            "POST",
            "/v1/keys",
            &format!(r#"{{"name": "carol admin", "roles": {roles}}}"#),
        )
        .expect(400);
        assert_eq!(
            (refused["error"].as_str(), refused["field"].as_str()),
            (Some("invalid_input"), Some("actor")),
            "{refused}"
        );
    }
    let line = r#"{"name": "imported admin", "roles": ["admin"], "key": "legacy_admin_secret_0001"}"#;
    let refused = call(addr, &root, "POST", "/v1/keys/import", &format!("{line}\n")).expect(400);
    assert_eq!(refused["source"]["field"], "actor", "{refused}");
    assert_eq!(refused["index"], 1, "entries are numbered from 1: {refused}");
    assert_eq!(
        call(addr, &root, "GET", "/v1/keys?all=true&unpaged=true", "").expect(200),
        before
    );
    let own = call(
        addr,
        &root,
        "POST",
        "/v1/keys",
        r#"{"name": "root's console", "roles": ["admin"], "actor": "root"}"#,
    )
    .expect(201);
    let who = call(addr, own["key"].as_str().unwrap(), "GET", "/v1/whoami", "").expect(200);
    assert_eq!(who["actor"], "root");
}

/// `create --for` and `revoke-actor` on the store, and the same through `--server`.
#[test]
fn the_command_line_makes_keys_for_people_and_revokes_them_here_and_through_a_server() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("db");
    let as_root = ["--actor", "root", "--actor-role", "super-admin"];
    let create = |extra: &[&str]| {
        let mut args = vec!["create"];
        args.extend(as_root);
        args.extend(extra);
        args.push("--json");
        let out: Value = serde_json::from_slice(&cli(&db, &args).stdout).unwrap();
        out
    };
    let root = create(&["--name", "root admin", "--role", "super-admin"]);
    let carol = create(&["--name", "carol admin", "--role", "admin", "--for", "carol"]);
    assert_eq!(
        (carol["acts_for"].as_str(), carol["created_by"].as_str()),
        (Some("carol"), Some("root"))
    );
    let list = String::from_utf8(cli(&db, &["list"]).stdout).unwrap();
    assert!(list.contains("root (for carol)"), "{list}");
    // An admin names only herself, and a person is for admin keys only.
    let as_admin = run(
        &db,
        &[
            "create",
            "--actor",
            "carol",
            "--actor-role",
            "admin",
            "--name",
            "x",
            "--role",
            "admin",
            "--for",
            "dave",
        ],
    );
    assert_eq!(as_admin.status.code(), Some(3), "{as_admin:?}");
    assert!(
        String::from_utf8_lossy(&as_admin.stderr).contains("dave"),
        "{as_admin:?}"
    );
    let plain = run(
        &db,
        &[
            "create",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            "--name",
            "x",
            "--role",
            "bot",
            "--for",
            "carol",
        ],
    );
    assert_eq!(plain.status.code(), Some(2), "{plain:?}");

    let mut args = vec!["revoke-actor"];
    args.extend(["--actor", "carol", "--actor-role", "admin", "carol"]);
    assert_eq!(run(&db, &args).status.code(), Some(3), "only a super admin");
    let mut args = vec!["revoke-actor"];
    args.extend(as_root);
    args.push("carol");
    let out = String::from_utf8(cli(&db, &args).stdout).unwrap();
    assert!(
        out.contains("revoked \"carol\"") && out.contains(carol["id"].as_str().unwrap()),
        "{out}"
    );
    let audit = String::from_utf8(cli(&db, &["audit"]).stdout).unwrap();
    assert!(
        audit.contains("actor_revoked") && audit.contains("person carol"),
        "{audit}"
    );
    let again = run(&db, &args);
    assert_eq!(again.status.code(), Some(2), "nothing to revoke: {again:?}");

    // Through a server, as root's key.
    let dave = create(&["--name", "dave admin", "--role", "admin", "--for", "dave"]);
    let served = Served::start(&db, &[]);
    let remote = |args: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keyledger"));
        cmd.args(["--server", &format!("http://{}", served.addr)])
            .args(args)
            .env_remove("KEYLEDGER_DB")
            .env_remove("KEYLEDGER_SERVER")
            .env("KEYLEDGER_API_KEY", secret(&root))
            .stdin(Stdio::null());
        cmd.output().unwrap()
    };
    let erin = remote(&[
        "create",
        "--name",
        "erin admin",
        "--role",
        "admin",
        "--for",
        "erin",
        "--json",
    ]);
    assert!(erin.status.success(), "{erin:?}");
    let erin: Value = serde_json::from_slice(&erin.stdout).unwrap();
    assert_eq!(erin["acts_for"], "erin");
    let revoked = remote(&["revoke-actor", "dave", "--with-keys", "--json"]);
    assert!(revoked.status.success(), "{revoked:?}");
    let revoked: Value = serde_json::from_slice(&revoked.stdout).unwrap();
    assert_eq!(
        (revoked["actor"].as_str(), revoked["with_keys"].as_bool()),
        (Some("dave"), Some(true))
    );
    assert_eq!(revoked["revoked"], json!([dave["id"]]));
    assert_eq!(
        call(served.addr, secret(&dave), "GET", "/v1/whoami", "").status,
        401
    );
    let nothing = remote(&["revoke-actor", "dave"]);
    assert_eq!(nothing.status.code(), Some(2), "{nothing:?}");
    let refused = remote(&[
        "revoke-actor",
        "--actor",
        "root",
        "--actor-role",
        "super-admin",
        "erin",
    ]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "--actor is refused with a server: {refused:?}"
    );
}
