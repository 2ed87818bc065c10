//! The `keyledger` binary, driven as scripts drive it: separate invocations on one store,
//! so every command also proves the store survives a restart.

#![allow(clippy::unwrap_used)]

#[path = "support/run.rs"]
mod run;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use run::{Run, finish};
use serde_json::Value;
use tempfile::TempDir;

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {:?}", self.stdout))
    }

    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }

    /// The contract: failures say so on stderr in one line beginning `error:`.
    fn assert_one_error_line(&self) {
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "stderr: {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "stderr: {:?}", self.stderr);
    }
}

/// A store in a temporary directory, and the binary pointed at it.
struct Store {
    dir: TempDir,
}

/// A key made by `create --json`.
struct Made {
    id: String,
    secret: String,
}

const ALICE: [&str; 4] = ["--actor", "alice", "--actor-role", "admin"];
const BOB: [&str; 4] = ["--actor", "bob", "--actor-role", "admin"];
const ROOT: [&str; 4] = ["--actor", "root", "--actor-role", "super-admin"];

fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    cmd.env_remove("KEYLEDGER_DB")
        .env_remove("KEYLEDGER_CHAIN_KEY_FILE")
        .env_remove("KEYLEDGER_EXPECT_HEAD")
        .env_remove("KEYLEDGER_SERVER")
        .env_remove("KEYLEDGER_API_KEY")
        .stdin(Stdio::null());
    cmd
}

impl Store {
    fn new() -> Self {
        Store {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = binary();
        cmd.arg("--db").arg(self.path()).args(args);
        cmd
    }

    /// Runs `cmd` as `actor` (one of `ALICE`, `BOB`, `ROOT`) with `args`.
    fn act(&self, cmd: &str, actor: [&str; 4], args: &[&str]) -> Run {
        let mut all = vec![cmd];
        all.extend_from_slice(&actor);
        all.extend_from_slice(args);
        self.run(&all)
    }

    fn run(&self, args: &[&str]) -> Run {
        finish(&mut self.command(args), None)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Run {
        finish(&mut self.command(args), Some(stdin))
    }

    fn create(&self, actor: [&str; 4], name: &str, roles: &[&str], ips: &[&str]) -> Made {
        let mut args = vec!["create"];
        args.extend(actor);
        args.extend(["--name", name, "--json"]);
        for role in roles {
            args.extend(["--role", role]);
        }
        for ip in ips {
            args.extend(["--ip", ip]);
        }
        let run = self.run(&args);
        assert_eq!(run.code, 0, "{run:?}");
        let key = run.json();
        Made {
            id: key["id"].as_str().unwrap().to_owned(),
            secret: key["key"].as_str().unwrap().to_owned(),
        }
    }

    fn verify(&self, key: &str, ip: &str) -> Run {
        self.run_with_stdin(&["verify", "--ip", ip, "--json"], &format!("{key}\n"))
    }
}

fn field_names(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

const KEY_FIELDS: [&str; 21] = [
    "id",
    "name",
    "roles",
    "whitelist",
    "created_by",
    "created_by_role",
    "created_at",
    "status",
    "expires_at",
    "last_used_at",
    "deleted",
    "deleted_by",
    "deleted_by_role",
    "deleted_at",
    "imported",
    "hint",
    "acts_for",
    "rate_limits",
    "credits",
    "external_id",
    "meta",
];

fn assert_rfc3339_utc(v: &Value) {
    let s = v.as_str().unwrap();
    assert!(s.ends_with('Z'), "{s} is not UTC");
    s.parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{s} is not RFC 3339: {e}"));
}

#[test]
fn create_json_has_every_key_field_and_the_secret() {
    let store = Store::new();
    let run = store.act(
        "create",
        ALICE,
        &[
            "--name",
            "notifications bot",
            "--role",
            "notifier",
            "--role",
            "reader",
            "--ip",
            "10.0.0.0/8",
            "--ip",
            "2001:db8::1",
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let key = run.json();
    let mut expected = names(&KEY_FIELDS);
    expected.insert("key".into());
    assert_eq!(field_names(&key), expected);
    assert_eq!(key["id"].as_str().unwrap().len(), 16);
    assert_eq!(key["name"], "notifications bot");
    assert_eq!(key["roles"], serde_json::json!(["notifier", "reader"]));
    assert_eq!(
        key["whitelist"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::1/128"])
    );
    assert_eq!(key["created_by"], "alice");
    assert_eq!(key["created_by_role"], "admin");
    assert_rfc3339_utc(&key["created_at"]);
    assert_eq!(key["status"], "active");
    assert_eq!(key["expires_at"], Value::Null);
    assert_eq!(key["last_used_at"], Value::Null);
    assert_eq!(key["deleted"], Value::Null);
    assert_eq!(key["deleted_by"], Value::Null);
    assert_eq!(key["deleted_by_role"], Value::Null);
    assert_eq!(key["deleted_at"], Value::Null);
    assert_eq!(key["imported"], false);
    let secret = key["key"].as_str().unwrap();
    assert!(secret.starts_with("klk_") && secret.len() == 40, "{secret}");
    assert_eq!(key["hint"], format!("klk_…{}", &secret[36..]));
}

#[test]
fn human_create_shows_the_secret_once_with_a_warning() {
    let store = Store::new();
    let run = store.act("create", ROOT, &["--name", "ops", "--role", "ops"]);
    assert_eq!(run.code, 0, "{run:?}");
    let secret_line = run.stdout.lines().find(|l| l.contains("klk_")).unwrap();
    let secret = secret_line.split_whitespace().last().unwrap();
    assert_eq!(secret.len(), 40, "{secret_line}");
    assert_eq!(run.stdout.matches(secret).count(), 1);
    assert!(
        run.stdout.contains("only time the key is shown"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("any address"),
        "empty whitelist: {}",
        run.stdout
    );
}

#[test]
fn secret_is_printed_only_by_create() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &["10.0.0.0/8"]);
    let mut runs = vec![
        store.run(&["list"]),
        store.run(&["list", "--all", "--json"]),
        store.run(&["show", &key.id]),
        store.run(&["show", &key.id, "--json"]),
        store.run_with_stdin(&["verify", "--ip", "10.1.1.1"], &key.secret),
        store.run_with_stdin(&["verify", "--ip", "192.0.2.1", "--json"], &key.secret),
        store.act("whitelist", ALICE, &[&key.id, "192.0.2.0/24"]),
        store.act("delete", BOB, &[&key.id]),
        store.act("delete", ROOT, &[&key.id]),
        store.run_with_stdin(&["verify", "--ip", "10.1.1.1", "--json"], &key.secret),
        store.run(&["audit"]),
        store.run(&["audit", "--json"]),
        store.run(&["audit", "--at", "2", "--json"]),
        store.run(&["check"]),
        // A secret where an id belongs, or on verify's command line, is not echoed back.
        store.run(&["show", &key.secret]),
        store.run(&["verify", "--ip", "10.1.1.1", &key.secret]),
        store.act("delete", ROOT, &[&key.secret]),
    ];
    runs.push(store.run(&["audit", "--key", &key.secret]));
    for run in &runs {
        assert!(
            !run.stdout.contains(&key.secret) && !run.stderr.contains(&key.secret),
            "secret leaked: {run:?}"
        );
        assert!(
            !run.stdout.contains(&key.secret[4..36]) && !run.stderr.contains(&key.secret[4..36]),
            "secret body leaked: {run:?}"
        );
    }
    let refused: Vec<&Run> = runs[runs.len() - 4..].iter().collect();
    for run in refused {
        assert_eq!(run.code, 2, "{run:?}");
        run.assert_one_error_line();
    }
}

/// Whether any file of the store at `dir` holds `needle`; panics if the store has no file.
fn store_files_hold(dir: &Path, needle: &[u8]) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    let mut found = false;
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files += 1;
                let bytes = std::fs::read(&path).unwrap();
                found |= bytes.windows(needle.len()).any(|w| w == needle);
            }
        }
    }
    assert!(files > 0, "no files in {}", dir.display());
    found
}

#[test]
fn store_files_never_hold_the_secret() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    assert_eq!(store.run(&["list"]).code, 0);
    assert!(!store_files_hold(&store.path(), &key.secret.as_bytes()[4..36]));
}

#[test]
fn list_shows_live_keys_and_all_adds_deleted_ones() {
    let store = Store::new();
    assert_eq!(
        store
            .run(&[
                "create",
                "--actor",
                "a",
                "--actor-role",
                "admin",
                "--name",
                "x",
                "--role",
                "r"
            ])
            .code,
        0
    );
    let gone = store.create(BOB, "gone", &["r"], &[]);
    assert_eq!(
        store
            .run(&["delete", "--actor", "bob", "--actor-role", "admin", &gone.id])
            .code,
        0
    );

    let live = store.run(&["list", "--json"]);
    assert_eq!(live.code, 0, "{live:?}");
    let live = live.json_lines();
    assert_eq!(live.len(), 1);
    assert_eq!(
        field_names(&live[0]),
        names(&KEY_FIELDS),
        "no secret in a listing"
    );
    assert_eq!(live[0]["name"], "x");
    assert_eq!(live[0]["deleted"], Value::Null);

    let all = store.run(&["list", "--all", "--json"]).json_lines();
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["id"], gone.id.as_str());
    assert_eq!(field_names(&all[1]["deleted"]), names(&["by", "at"]));
    assert_eq!(all[1]["deleted"]["by"], "bob");
    assert_rfc3339_utc(&all[1]["deleted"]["at"]);
    assert_eq!(all[1]["status"], "deleted");
    assert_eq!(all[1]["deleted_by"], "bob");
    assert_eq!(all[1]["deleted_by_role"], "admin");
    assert_eq!(all[1]["deleted_at"], all[1]["deleted"]["at"]);
    assert_eq!(all[0]["status"], "active");

    let human = store.run(&["list", "--all"]);
    assert!(human.stdout.contains("deleted by bob"), "{}", human.stdout);
    assert!(!store.run(&["list"]).stdout.contains("gone"));
}

#[test]
fn human_list_is_an_aligned_table() {
    let store = Store::new();
    store.create(ALICE, "a", &["r"], &["10.0.0.1"]);
    store.create(ALICE, "a much longer name", &["reader", "writer"], &[]);
    let run = store.run(&["list"]);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(lines[0].starts_with("ID  "), "{}", lines[0]);
    let column = |header: &str| lines[0].find(header).unwrap();
    for (header, cell) in [("NAME", "a"), ("ROLES", "r"), ("CREATED BY", "alice")] {
        let at = column(header);
        assert!(lines[1][at..].starts_with(cell), "{header}: {}", lines[1]);
    }
    let roles = lines[0].find("ROLES").unwrap();
    assert!(lines[2][roles..].starts_with("reader, writer"), "{}", lines[2]);
    assert!(lines[1].contains("10.0.0.1") && !lines[1].contains("10.0.0.1/32"));
}

#[test]
fn list_of_an_empty_store_says_so() {
    let store = Store::new();
    let key = store.create(ALICE, "x", &["r"], &[]);
    store.act("delete", ALICE, &[&key.id]);
    let run = store.run(&["list"]);
    assert_eq!((run.code, run.stdout.trim()), (0, "no live keys"));
    assert_eq!(store.run(&["list", "--json"]).stdout, "");
}

#[test]
fn show_prints_one_key_live_or_deleted() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &["192.0.2.0/24"]);
    let shown = store.run(&["show", &key.id, "--json"]);
    assert_eq!(shown.code, 0, "{shown:?}");
    let shown = shown.json();
    assert_eq!(field_names(&shown), names(&KEY_FIELDS));
    assert_eq!(shown["whitelist"], serde_json::json!(["192.0.2.0/24"]));

    let human = store.run(&["show", &key.id]);
    for expected in ["bot", "notifier", "192.0.2.0/24", "alice (admin)", "UTC"] {
        assert!(human.stdout.contains(expected), "{expected}: {}", human.stdout);
    }

    store.act("delete", ROOT, &[&key.id]);
    let deleted = store.run(&["show", &key.id, "--json"]);
    assert_eq!(deleted.code, 0);
    assert_eq!(deleted.json()["deleted"]["by"], "root");
}

#[test]
fn unknown_key_id_exits_4() {
    let store = Store::new();
    store.create(ALICE, "bot", &["notifier"], &[]);
    let unknown = "00000000000000ff";
    for args in [
        vec!["show", unknown],
        vec![
            "delete",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            unknown,
        ],
        vec![
            "whitelist",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            unknown,
            "10.0.0.1",
        ],
        vec![
            "unwhitelist",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            unknown,
            "10.0.0.1",
        ],
        vec!["audit", "--key", unknown],
    ] {
        let run = store.run(&args);
        assert_eq!(run.code, 4, "{args:?}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains("not found"), "{run:?}");
    }
}

#[test]
fn verify_accepts_a_whitelisted_address_and_rejects_others_with_exit_1() {
    let store = Store::new();
    let key = store.create(
        ALICE,
        "bot",
        &["notifier", "reader"],
        &["10.0.0.0/8", "2001:db8::/32"],
    );

    for ip in ["10.1.2.3", "2001:db8::7", "::ffff:10.9.9.9"] {
        let run = store.verify(&key.secret, ip);
        assert_eq!(run.code, 0, "{ip}: {run:?}");
        let answer = run.json();
        assert_eq!(
            field_names(&answer),
            names(&["valid", "reason", "id", "name", "roles"])
        );
        assert_eq!(answer["valid"], true);
        assert_eq!(answer["reason"], Value::Null);
        assert_eq!(answer["id"], key.id.as_str());
        assert_eq!(answer["name"], "bot");
        assert_eq!(answer["roles"], serde_json::json!(["notifier", "reader"]));
    }

    let run = store.verify(&key.secret, "192.0.2.1");
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(run.stderr, "", "a rejection is an answer, not an error");
    let answer = run.json();
    assert_eq!(
        field_names(&answer),
        names(&["valid", "reason", "id", "name", "roles"])
    );
    assert_eq!(answer["valid"], false);
    assert_eq!(answer["reason"], "ip_not_whitelisted");
    assert_eq!(answer["id"], Value::Null);
    assert_eq!(answer["name"], Value::Null);
    assert_eq!(answer["roles"], serde_json::json!([]));

    let human = store.run_with_stdin(&["verify", "--ip", "10.0.0.1"], &key.secret);
    assert_eq!(human.code, 0);
    assert!(human.stdout.starts_with("accepted"), "{}", human.stdout);
    let human = store.run_with_stdin(&["verify", "--ip", "11.0.0.1"], &key.secret);
    assert_eq!(human.code, 1);
    assert!(human.stdout.starts_with("rejected"), "{}", human.stdout);
}

#[test]
fn verify_rejects_malformed_and_unknown_keys_by_reason() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    let mut typo: Vec<char> = key.secret.chars().collect();
    typo[10] = if typo[10] == 'a' { 'b' } else { 'a' };
    let typo: String = typo.into_iter().collect();
    for (presented, reason) in [
        ("klk_short", "malformed_length"),
        (typo.as_str(), "malformed_checksum"),
        ("klk_0000000000000000000000000000000000!!", "malformed_character"),
    ] {
        let run = store.verify(presented, "10.0.0.1");
        assert_eq!(run.code, 1, "{presented}: {run:?}");
        assert_eq!(run.json()["reason"], reason);
    }
    let other = Store::new();
    let stranger = other.create(ALICE, "elsewhere", &["r"], &[]);
    let run = store.verify(&stranger.secret, "10.0.0.1");
    assert_eq!(
        (run.code, run.json()["reason"].clone()),
        (1, Value::from("unknown_key"))
    );
}

#[test]
fn verify_reads_the_key_from_stdin_and_never_from_the_command_line() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    let crlf = store.run_with_stdin(&["verify", "--ip", "10.0.0.1"], &format!("{}\r\n", key.secret));
    assert_eq!(crlf.code, 0, "{crlf:?}");

    let argument = store.run(&["verify", "--ip", "10.0.0.1", &key.secret]);
    assert_eq!(argument.code, 2, "{argument:?}");
    argument.assert_one_error_line();
    assert!(argument.stderr.contains("standard input"), "{}", argument.stderr);
    assert!(!argument.stderr.contains(&key.secret));

    let empty = store.run_with_stdin(&["verify", "--ip", "10.0.0.1"], "");
    assert_eq!(empty.code, 2, "{empty:?}");
    empty.assert_one_error_line();

    let bad_ip = store.run_with_stdin(&["verify", "--ip", "10.0.0.0/8"], &key.secret);
    assert_eq!(bad_ip.code, 2, "{bad_ip:?}");
}

#[test]
fn whitelist_and_unwhitelist_change_what_verifies() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &["10.0.0.0/8"]);
    assert_eq!(store.verify(&key.secret, "192.0.2.7").code, 1);

    let added = store.act("whitelist", ALICE, &[&key.id, "192.0.2.0/24", "::1"]);
    assert_eq!(added.code, 0, "{added:?}");
    assert!(added.stdout.contains("192.0.2.0/24"), "{}", added.stdout);
    assert_eq!(store.verify(&key.secret, "192.0.2.7").code, 0);
    assert_eq!(store.verify(&key.secret, "::1").code, 0);

    let removed = store.act("unwhitelist", ROOT, &[&key.id, "192.0.2.0/24"]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert_eq!(store.verify(&key.secret, "192.0.2.7").code, 1);
    let shown = store.run(&["show", &key.id, "--json"]).json();
    assert_eq!(shown["whitelist"], serde_json::json!(["10.0.0.0/8", "::1/128"]));
}

#[test]
fn whitelist_changes_that_change_nothing_or_are_malformed_exit_2() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &["10.0.0.0/8"]);
    let who = ["--actor", "alice", "--actor-role", "admin"];
    for (command, net, says) in [
        ("whitelist", "10.0.0.0/8", "already whitelisted"),
        ("unwhitelist", "192.0.2.1", "not whitelisted"),
        ("whitelist", "10.1.2.3/8", "host bits"),
        ("whitelist", "not-an-ip", "not an IP address"),
    ] {
        let mut args = vec![command];
        args.extend(who);
        args.extend([key.id.as_str(), net]);
        let run = store.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
    }
    let trail = store.run(&["audit", "--json"]).json_lines();
    assert_eq!(trail.len(), 1, "refused changes append nothing");
}

#[test]
fn admin_cannot_delete_another_admins_key() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    let run = store.act("delete", BOB, &[&key.id]);
    assert_eq!(run.code, 3, "{run:?}");
    run.assert_one_error_line();
    assert!(run.stderr.contains("permission denied"), "{}", run.stderr);
    assert_eq!(
        store.verify(&key.secret, "10.0.0.1").code,
        0,
        "the key still verifies"
    );
    let wl = store.act("whitelist", BOB, &[&key.id, "10.0.0.1"]);
    assert_eq!(wl.code, 3, "{wl:?}");
}

#[test]
fn super_admin_deletes_any_key_and_it_stops_verifying() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    let run = store.act("delete", ROOT, &[&key.id]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains(&key.id), "{}", run.stdout);
    let answer = store.verify(&key.secret, "10.0.0.1");
    assert_eq!(
        (answer.code, answer.json()["reason"].clone()),
        (1, Value::from("unknown_key"))
    );

    let again = store.act("delete", ROOT, &[&key.id]);
    assert_eq!(again.code, 4, "deleting twice: {again:?}");
    again.assert_one_error_line();
    let wl = store.act("whitelist", ROOT, &[&key.id, "10.0.0.1"]);
    assert_eq!(wl.code, 4, "changing a deleted key: {wl:?}");
}

#[test]
fn admin_deletes_their_own_key() {
    let store = Store::new();
    let key = store.create(BOB, "mine", &["r"], &[]);
    let run = store.act("delete", BOB, &[&key.id]);
    assert_eq!(run.code, 0, "{run:?}");
}

#[test]
fn a_user_is_refused_with_exit_3_and_an_unknown_actor_role_is_a_usage_error() {
    let store = Store::new();
    let key = store.create(ROOT, "ops", &["ops"], &[]);
    for (role, code) in [("user", 3), ("viewer", 2), ("Admin", 2), ("", 2)] {
        let run = store.run(&[
            "create",
            "--actor",
            "eve",
            "--actor-role",
            role,
            "--name",
            "x",
            "--role",
            "r",
        ]);
        assert_eq!(run.code, code, "{role}: {run:?}");
        run.assert_one_error_line();
        if code == 2 {
            for valid in ["super-admin", "admin", "user"] {
                assert!(run.stderr.contains(valid), "{role}: {run:?}");
            }
        }
        let run = store.run(&["delete", "--actor", "eve", "--actor-role", role, &key.id]);
        assert_eq!(run.code, code, "{role}: {run:?}");
    }
    assert_eq!(
        store.run(&["list", "--json"]).json_lines().len(),
        1,
        "nothing changed"
    );
}

#[test]
fn only_a_super_admin_may_grant_the_super_admin_role() {
    let store = Store::new();
    let args = |who: [&'static str; 4]| {
        let mut a = vec!["create"];
        a.extend(who);
        a.extend(["--name", "root key", "--role", "super-admin"]);
        a
    };
    let refused = store.run(&args(ALICE));
    assert_eq!(refused.code, 3, "{refused:?}");
    assert_eq!(store.run(&args(ROOT)).code, 0);
}

#[test]
fn invalid_input_and_usage_errors_exit_2_with_one_error_line() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    let cases: Vec<Vec<&str>> = vec![
        vec!["create", "--actor", "a", "--actor-role", "admin", "--name", "x"],
        vec![
            "create",
            "--actor",
            "a",
            "--actor-role",
            "admin",
            "--name",
            "  ",
            "--role",
            "r",
        ],
        vec![
            "create",
            "--actor",
            "a",
            "--actor-role",
            "admin",
            "--name",
            "x",
            "--role",
            "Bad Role",
        ],
        vec![
            "create",
            "--actor",
            "a",
            "--actor-role",
            "admin",
            "--name",
            "x",
            "--role",
            "r",
            "--role",
            "r",
        ],
        vec![
            "create",
            "--actor",
            "",
            "--actor-role",
            "admin",
            "--name",
            "x",
            "--role",
            "r",
        ],
        vec![
            "create",
            "--actor",
            "a",
            "--actor-role",
            "admin",
            "--name",
            "x",
            "--role",
            "r",
            "--ip",
            "300.0.0.1",
        ],
        vec!["show", "not-hex"],
        vec!["show", "ABCDEF0123456789"],
        vec!["frobnicate"],
        vec!["list", "--bogus"],
        vec!["audit", "--kind", "renamed"],
        vec!["audit", "--since", "last tuesday"],
        vec!["audit", "--at", "-1"],
        vec!["audit", "--at", "3", "--kind", "created"],
        vec!["delete", "--actor", "root", "--actor-role", "super-admin"],
    ];
    for args in cases {
        let run = store.run(&args);
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
        run.assert_one_error_line();
        assert_eq!(run.stdout, "", "{args:?}");
    }
    assert_eq!(
        store.run(&["list", "--json"]).json_lines().len(),
        1,
        "nothing was created"
    );
    assert_eq!(store.verify(&key.secret, "10.0.0.1").code, 0);
}

#[test]
fn help_and_version_exit_0() {
    for args in [
        vec!["--help"],
        vec!["--version"],
        vec!["audit", "--help"],
        vec!["help", "verify"],
    ] {
        let run = finish(binary().args(&args), None);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        assert!(!run.stdout.is_empty());
    }
    let help = finish(binary().arg("--help"), None);
    assert!(help.stdout.contains("Exit codes"), "{}", help.stdout);
}

#[test]
fn audit_json_entries_have_stable_fields() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &["10.0.0.0/8"]);
    let who = ["--actor", "alice", "--actor-role", "admin"];
    let mut add = vec!["whitelist"];
    add.extend(who);
    add.extend([key.id.as_str(), "192.0.2.1", "2001:db8::/32"]);
    assert_eq!(store.run(&add).code, 0);
    let mut remove = vec!["unwhitelist"];
    remove.extend(who);
    remove.extend([key.id.as_str(), "192.0.2.1"]);
    assert_eq!(store.run(&remove).code, 0);
    assert_eq!(
        store
            .run(&[
                "delete",
                "--actor",
                "root",
                "--actor-role",
                "super-admin",
                &key.id
            ])
            .code,
        0
    );

    let run = store.run(&["audit", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "no progress bar when stderr is not a terminal");
    let trail = run.json_lines();
    let fields = names(&[
        "seq",
        "at",
        "actor",
        "actor_role",
        "kind",
        "key_id",
        "key_name",
        "ip",
        "whitelist",
        "previous_valid_until",
        "via",
        "person",
        "with_keys",
        "rate_limits",
        "credits",
        "credits_added",
        "changes",
    ]);
    let created: Value = serde_json::json!(["10.0.0.0/8"]);
    let expected = [
        (1, "alice", "admin", "created", Value::Null, created),
        (
            2,
            "alice",
            "admin",
            "whitelisted",
            "192.0.2.1/32".into(),
            Value::Null,
        ),
        (
            3,
            "alice",
            "admin",
            "whitelisted",
            "2001:db8::/32".into(),
            Value::Null,
        ),
        (
            4,
            "alice",
            "admin",
            "unwhitelisted",
            "192.0.2.1/32".into(),
            Value::Null,
        ),
        (5, "root", "super-admin", "deleted", Value::Null, Value::Null),
    ];
    assert_eq!(trail.len(), expected.len());
    for (entry, (seq, actor, role, kind, ip, whitelist)) in trail.iter().zip(expected) {
        assert_eq!(field_names(entry), fields);
        assert_eq!(entry["seq"], seq);
        assert_eq!(entry["actor"], actor);
        assert_eq!(entry["actor_role"], role);
        assert_eq!(entry["kind"], kind);
        assert_eq!(entry["key_id"], key.id.as_str());
        assert_eq!(entry["key_name"], "bot");
        assert_eq!(entry["ip"], ip);
        assert_eq!(
            entry["whitelist"], whitelist,
            "the first whitelist, of created keys only"
        );
        assert_eq!(entry["previous_valid_until"], Value::Null, "set for rolled only");
        assert_eq!(entry["via"], Value::Null, "no admin key in the command line");
        assert_rfc3339_utc(&entry["at"]);
    }

    let human = store.run(&["audit"]);
    assert_eq!(human.code, 0);
    assert_eq!(human.stdout.lines().count(), 6, "{}", human.stdout);
    assert!(human.stdout.starts_with("SEQ"), "{}", human.stdout);
    assert!(human.stdout.contains("TIME (UTC)"));
}

#[test]
fn audit_filters_answer_who_deleted_what() {
    let store = Store::new();
    let a = store.create(ALICE, "alpha", &["r"], &[]);
    let b = store.create(BOB, "beta", &["r"], &[]);
    store.create(BOB, "gamma", &["r"], &[]);
    assert_eq!(
        store
            .run(&["delete", "--actor", "root", "--actor-role", "super-admin", &a.id])
            .code,
        0
    );
    assert_eq!(
        store
            .run(&["delete", "--actor", "bob", "--actor-role", "admin", &b.id])
            .code,
        0
    );

    let deleted = store.run(&["audit", "--kind", "deleted", "--json"]).json_lines();
    let who_what: Vec<(String, String)> = deleted
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().into(),
                e["key_name"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        who_what,
        [
            ("root".to_owned(), "alpha".to_owned()),
            ("bob".to_owned(), "beta".to_owned())
        ]
    );

    let by_bob = store.run(&["audit", "--actor", "bob", "--json"]).json_lines();
    assert_eq!(by_bob.len(), 3);
    let about_a = store.run(&["audit", "--key", &a.id, "--json"]).json_lines();
    let kinds: Vec<&str> = about_a.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["created", "deleted"]);
    let combined = store
        .run(&[
            "audit", "--key", &b.id, "--kind", "deleted", "--actor", "bob", "--json",
        ])
        .json_lines();
    assert_eq!(combined.len(), 1);

    let all = store
        .run(&["audit", "--since", "2000-01-01T00:00:00Z", "--json"])
        .json_lines();
    assert_eq!(all.len(), 5);
    let none = store.run(&["audit", "--until", "2000-01-01T00:00:00Z", "--json"]);
    assert_eq!((none.code, none.stdout.as_str()), (0, ""));
    let third = all[2]["at"].as_str().unwrap();
    let from_third = store.run(&["audit", "--since", third, "--json"]).json_lines();
    assert_eq!(from_third.first().map(|e| e["seq"].clone()), Some(3.into()));
    let up_to_third = store.run(&["audit", "--until", third, "--json"]).json_lines();
    assert_eq!(up_to_third.last().map(|e| e["seq"].clone()), Some(3.into()));
    let offset = store
        .run(&["audit", "--since", "2000-01-01T02:00:00+02:00", "--json"])
        .json_lines();
    assert_eq!(offset.len(), 5, "any RFC 3339 offset is accepted");

    let nothing = store.run(&["audit", "--kind", "unwhitelisted"]);
    assert_eq!((nothing.code, nothing.stdout.trim()), (0, "no entries match"));
}

#[test]
fn audit_at_shows_the_keys_as_they_stood_after_that_record() {
    let store = Store::new();
    let a = store.create(ALICE, "alpha", &["r"], &["10.0.0.0/8"]);
    let b = store.create(BOB, "beta", &["r"], &[]);
    let wl = store.act("whitelist", ALICE, &[&a.id, "192.0.2.0/24"]);
    assert_eq!(wl.code, 0);
    assert_eq!(
        store
            .run(&["delete", "--actor", "root", "--actor-role", "super-admin", &a.id])
            .code,
        0
    );
    // Records: 1 create alpha, 2 create beta, 3 whitelist alpha, 4 delete alpha.

    let at = |seq: &str| {
        let run = store.run(&["audit", "--at", seq, "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        run.json_lines()
    };
    assert!(at("0").is_empty());
    let one = at("1");
    assert_eq!(one.len(), 1);
    assert_eq!(field_names(&one[0]), names(&KEY_FIELDS));
    assert_eq!(one[0]["whitelist"], serde_json::json!(["10.0.0.0/8"]));
    let three = at("3");
    assert_eq!(three.len(), 2);
    assert_eq!(
        three[0]["whitelist"],
        serde_json::json!(["10.0.0.0/8", "192.0.2.0/24"])
    );
    assert_eq!(three[0]["deleted"], Value::Null, "alpha was live after record 3");
    let four = at("4");
    assert_eq!(four[0]["deleted"]["by"], "root");
    assert_eq!(four[1]["id"], b.id.as_str());

    let only_beta = store
        .run(&["audit", "--at", "3", "--key", &b.id, "--json"])
        .json_lines();
    assert_eq!(only_beta.len(), 1);
    assert_eq!(only_beta[0]["name"], "beta");

    let human = store.run(&["audit", "--at", "3"]);
    assert_eq!(human.code, 0);
    assert!(human.stdout.contains("record 3"), "{}", human.stdout);
    assert!(!human.stdout.contains("deleted by"), "{}", human.stdout);
    let human = store.run(&["audit", "--at", "4"]);
    assert!(human.stdout.contains("deleted by root"), "{}", human.stdout);

    let past = store.run(&["audit", "--at", "5"]);
    assert_eq!(past.code, 2, "{past:?}");
    past.assert_one_error_line();
}

#[test]
fn locked_store_is_refused_at_once_with_exit_5() {
    let store = Store::new();
    store.create(ALICE, "bot", &["notifier"], &[]);
    let held = keyledger::KeyStore::open(store.path()).unwrap();
    let started = Instant::now();
    for args in [
        vec!["list"],
        vec!["audit"],
        vec!["check"],
        vec![
            "create",
            "--actor",
            "a",
            "--actor-role",
            "admin",
            "--name",
            "x",
            "--role",
            "r",
        ],
    ] {
        let run = store.run(&args);
        assert_eq!(run.code, 5, "{args:?}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains("in use"), "{}", run.stderr);
    }
    let verify = store.run_with_stdin(&["verify", "--ip", "10.0.0.1"], "klk_x");
    assert_eq!(verify.code, 5, "{verify:?}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "refused at once, no hang"
    );
    drop(held);
    assert_eq!(store.run(&["list"]).code, 0, "usable once released");
}

#[test]
fn missing_store_is_refused_without_being_created() {
    let store = Store::new();
    let reads = [
        vec!["list"],
        vec!["show", "0000000000000001"],
        vec!["audit"],
        vec!["check"],
        vec!["repair"],
        vec!["head"],
        vec!["export", "/nonexistent/backup.kl"],
    ];
    for args in &reads {
        let run = store.run(args);
        assert_eq!(run.code, 5, "{args:?}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains("no store"), "{}", run.stderr);
    }
    assert!(!store.path().exists());
    // A directory that exists but is not a store is refused the same way, and left empty.
    std::fs::create_dir_all(store.path()).unwrap();
    for args in &reads {
        let run = store.run(args);
        assert_eq!(run.code, 5, "{args:?}: {run:?}");
    }
    let verify = store.run_with_stdin(&["verify", "--ip", "10.0.0.1"], "klk_x\n");
    assert_eq!(verify.code, 5, "{verify:?}");
    assert_eq!(
        std::fs::read_dir(store.path()).unwrap().count(),
        0,
        "nothing was created"
    );
    // And a directory holding something else is never made a store, even by a write.
    std::fs::write(store.path().join("notes.txt"), "mine").unwrap();
    let create = store.act("create", ROOT, &["--name", "k", "--role", "bot"]);
    assert_eq!(create.code, 5, "{create:?}");
    assert_eq!(std::fs::read_dir(store.path()).unwrap().count(), 1);
}

#[test]
fn db_defaults_to_the_environment_then_to_keyledger_db() {
    let dir = tempfile::tempdir().unwrap();
    let from_env = dir.path().join("from-env");
    let create = [
        "create",
        "--actor",
        "a",
        "--actor-role",
        "admin",
        "--name",
        "x",
        "--role",
        "r",
    ];

    let run = finish(binary().env("KEYLEDGER_DB", &from_env).args(create), None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(from_env.is_dir());

    let run = finish(binary().current_dir(dir.path()).args(create), None);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(dir.path().join("keyledger.db").is_dir());

    let listed = |cmd: &mut Command| finish(cmd.args(["list", "--json"]), None).json_lines().len();
    assert_eq!(listed(binary().current_dir(dir.path())), 1);
    assert_eq!(listed(binary().env("KEYLEDGER_DB", &from_env)), 1);
    let flag_wins = listed(
        binary()
            .current_dir(dir.path())
            .env("KEYLEDGER_DB", dir.path().join("elsewhere"))
            .arg("--db")
            .arg(&from_env),
    );
    assert_eq!(flag_wins, 1);
}

#[test]
fn check_reports_an_intact_log_with_exit_0() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    store.act("delete", ALICE, &[&key.id]);
    let run = store.run(&["check"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "", "no progress bar when stderr is not a terminal");
    assert!(run.stdout.starts_with("intact: 2 records"), "{}", run.stdout);
}

/// Changes a byte in the middle of stored record `seq`, behind the store's back.
fn tamper(store: &Path, seq: u64) {
    let db = sled::open(store.join("log")).unwrap();
    let log = db.open_tree("log").unwrap();
    let mut bytes = log.get(seq.to_be_bytes()).unwrap().unwrap().to_vec();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    log.insert(seq.to_be_bytes(), bytes).unwrap();
    db.flush().unwrap();
}

#[test]
fn check_names_a_tampered_record_and_exits_1() {
    let store = Store::new();
    for name in ["one", "two", "three"] {
        store.create(ALICE, name, &["r"], &[]);
    }
    tamper(&store.path(), 2);

    let run = store.run(&["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    let problem = run.stdout.lines().nth(1).unwrap_or_default();
    assert!(
        problem.starts_with("2 "),
        "the problem is at record 2: {}",
        run.stdout
    );
    assert!(run.stdout.contains("damaged"), "{}", run.stdout);

    let list = store.run(&["list"]);
    assert_eq!(list.code, 5, "a damaged log does not open: {list:?}");
    list.assert_one_error_line();
    assert!(list.stderr.contains("corrupt"), "{}", list.stderr);
}

#[test]
fn repair_of_a_clean_log_removes_nothing() {
    let store = Store::new();
    store.create(ALICE, "bot", &["notifier"], &[]);
    let run = store.run(&["repair"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("nothing to repair"), "{}", run.stdout);
    assert_eq!(store.run(&["list", "--json"]).json_lines().len(), 1);
}

#[test]
fn keyed_store_opens_only_with_its_chain_key_file() {
    let store = Store::new();
    let key_file = store.dir.path().join("chain.key");
    std::fs::write(&key_file, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let key_arg = key_file.to_str().unwrap();
    let create = store.run(&[
        "--chain-key-file",
        key_arg,
        "create",
        "--actor",
        "a",
        "--actor-role",
        "admin",
        "--name",
        "x",
        "--role",
        "r",
    ]);
    assert_eq!(create.code, 0, "{create:?}");

    let check = store.run(&["--chain-key-file", key_arg, "check"]);
    assert_eq!(check.code, 0, "{check:?}");
    assert!(check.stdout.contains("keyed"), "{}", check.stdout);

    for args in [&["list"][..], &["check"], &["repair"], &["head"]] {
        let without = store.run(args);
        assert_eq!(without.code, 2, "{args:?}: {without:?}");
        without.assert_one_error_line();
        assert!(without.stderr.contains("--chain-key-file"), "{}", without.stderr);
    }

    std::fs::write(&key_file, "not hex").unwrap();
    let bad = store.run(&["--chain-key-file", key_arg, "list"]);
    assert_eq!(bad.code, 2, "{bad:?}");
    bad.assert_one_error_line();
}

#[test]
fn demo_runs_the_guided_tour_without_printing_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let run = finish(binary().current_dir(dir.path()).arg("demo"), None);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    for expected in [
        "root",
        "alice",
        "bob",
        "accepted",
        "rejected: client address is not whitelisted",
        "refused: permission denied",
        "rejected: unknown or deleted key",
        "super-admin  deleted",
        "rejected: key is past its rate limit of 3/1m; retry in ",
        "limits_changed",
        "rate limits: 3/1m",
    ] {
        assert!(run.stdout.contains(expected), "{expected}: {}", run.stdout);
    }
    for (i, _) in run.stdout.match_indices("klk_") {
        let after = &run.stdout[i + 4..];
        let body = after.chars().take_while(char::is_ascii_alphanumeric).count();
        assert!(body < 8, "a secret in the demo: {}", &run.stdout[i..]);
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the demo writes nothing in the working directory"
    );
}

#[test]
fn store_survives_many_invocations() {
    let store = Store::new();
    let keys: Vec<Made> = (0..5)
        .map(|i| store.create(ALICE, &format!("bot {i}"), &["r"], &["10.0.0.0/8"]))
        .collect();
    for key in &keys {
        assert_eq!(store.verify(&key.secret, "10.0.0.1").code, 0);
    }
    let check = store.run(&["check"]);
    assert!(check.stdout.starts_with("intact: 5 records"), "{}", check.stdout);
}

#[test]
fn chain_key_new_writes_a_private_key_file_once_and_starts_a_keyed_store() {
    use std::os::unix::fs::PermissionsExt;
    let store = Store::new();
    let key_file = store.dir.path().join("chain.key");
    let key_arg = key_file.to_str().unwrap();
    let made = store.run(&["chain-key", "new", key_arg]);
    assert_eq!(made.code, 0, "{made:?}");
    let hex = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(hex.trim().len(), 64);
    assert!(!made.stdout.contains(hex.trim()), "the key is never printed");
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let again = store.run(&["chain-key", "new", key_arg]);
    assert_eq!(again.code, 2, "{again:?}");
    again.assert_one_error_line();
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        hex,
        "never overwritten"
    );

    let keyed = |args: &[&str]| {
        let mut all = vec!["--chain-key-file", key_arg];
        all.extend_from_slice(args);
        store.run(&all)
    };
    let create = store.act(
        "create",
        ROOT,
        &["--name", "k", "--role", "bot", "--chain-key-file", key_arg],
    );
    assert_eq!(create.code, 0, "{create:?}");
    let head = keyed(&["head", "--json"]).json();
    assert_eq!(head["keyed"], true);
    assert_eq!(head["seq"], 1);
    assert_eq!(head["integrity"], "verified");
}

#[test]
fn head_prints_a_witness_that_expect_head_holds_the_store_to() {
    let store = Store::new();
    let made = store.create(ROOT, "victim", &["bot"], &[]);
    let before = store.run(&["head", "--json"]).json();
    let witness_before = before["witness"].as_str().unwrap().to_owned();
    assert_eq!(before["seq"], 1);
    assert_eq!(witness_before, format!("1:{}", before["hash"].as_str().unwrap()));
    assert!(before["at"].as_str().unwrap().ends_with('Z'));

    let deleted = store.act("delete", ROOT, &[made.id.as_str()]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    let after = store.run(&["head", "--json"]).json();
    let witness_after = after["witness"].as_str().unwrap().to_owned();

    // The store reaches both heads: the later one, and the one it has passed.
    for w in [&witness_before, &witness_after] {
        let run = store.run(&["--expect-head", w, "list"]);
        assert_eq!(run.code, 0, "{run:?}");
        let check = store.run(&["--expect-head", w, "check"]);
        assert_eq!(check.code, 0, "{check:?}");
    }
    // A head it never had (a fork) or has not reached is refused.
    let mut forked = witness_after.clone();
    let last = forked.pop().unwrap();
    forked.push(if last == '0' { '1' } else { '0' });
    let ahead = format!("9:{}", after["hash"].as_str().unwrap());
    for w in [&forked, &ahead] {
        let run = store.run(&["--expect-head", w, "list"]);
        assert_eq!(run.code, 5, "{run:?}");
        run.assert_one_error_line();
        let check = store.run(&["--expect-head", w, "check"]);
        assert_eq!(check.code, 1, "{check:?}");
        assert!(check.stdout.contains("witness"), "{}", check.stdout);
    }
    let bad = store.run(&["--expect-head", "not-a-head", "list"]);
    assert_eq!(bad.code, 2, "{bad:?}");
}

#[test]
fn unwhitelisting_the_last_network_needs_allow_any_address() {
    let store = Store::new();
    let made = store.create(ALICE, "k", &["bot"], &["10.0.0.0/8"]);
    let refused = store.act("unwhitelist", ALICE, &[made.id.as_str(), "10.0.0.0/8"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    refused.assert_one_error_line();
    assert!(
        refused.stderr.contains("--allow-any-address"),
        "{}",
        refused.stderr
    );
    let verify = |ip: &str, extra: &[&str]| {
        let mut args = extra.to_vec();
        args.extend(["verify", "--ip", ip]);
        store.run_with_stdin(&args, &format!("{}\n", made.secret)).code
    };
    assert_eq!(verify("8.8.8.8", &[]), 1, "still restricted");
    let opened = store.act(
        "unwhitelist",
        ALICE,
        &[made.id.as_str(), "10.0.0.0/8", "--allow-any-address"],
    );
    assert_eq!(opened.code, 0, "{opened:?}");
    assert!(opened.stdout.contains("any address"), "{}", opened.stdout);
    assert_eq!(verify("8.8.8.8", &[]), 0);
    assert_eq!(verify("8.8.8.8", &["--require-whitelist"]), 1);
}

// The key lifecycle: expiry, roll, disable and enable, adopted keys, last use, and the
// security trail of refused commands.

const USER: [&str; 4] = ["--actor", "eve", "--actor-role", "user"];

impl Store {
    /// `create --json` with `extra` arguments (an expiry); the key as `--json` shows it.
    fn create_with(&self, actor: [&str; 4], name: &str, extra: &[&str]) -> (Made, Value) {
        let mut args = vec!["--name", name, "--role", "r", "--json"];
        args.extend_from_slice(extra);
        let run = self.act("create", actor, &args);
        assert_eq!(run.code, 0, "{run:?}");
        let key = run.json();
        let made = Made {
            id: key["id"].as_str().unwrap().to_owned(),
            secret: key["key"].as_str().unwrap().to_owned(),
        };
        (made, key)
    }

    fn show(&self, id: &str) -> Value {
        let run = self.run(&["show", id, "--json"]);
        assert_eq!(run.code, 0, "{run:?}");
        run.json()
    }

    fn audit_len(&self) -> usize {
        self.run(&["audit", "--json"]).json_lines().len()
    }

    /// A file next to the store.
    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn import_keys(&self, actor: [&str; 4], file: &Path, extra: &[&str]) -> Run {
        let mut args = vec![file.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.act("import-keys", actor, &args)
    }
}

/// RFC 3339 for now plus `secs` seconds, to the second (the log keeps microseconds).
fn from_now(secs: i64) -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + secs)
        .unwrap()
        .to_string()
}

fn timestamp(v: &Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

fn assert_absent(runs: &[&Run], secret: &str) {
    for run in runs {
        assert!(
            !run.stdout.contains(secret) && !run.stderr.contains(secret),
            "secret leaked: {run:?}"
        );
    }
}

/// The `id`s of `list` (with `--all` if `all`).
fn listed_ids(store: &Store, all: bool) -> Vec<String> {
    let mut args = vec!["list", "--json"];
    if all {
        args.push("--all");
    }
    store
        .run(&args)
        .json_lines()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_expiry_in_the_past_or_a_bad_duration_exits_2_and_creates_nothing() {
    let store = Store::new();
    store.create(ALICE, "first", &["r"], &[]);
    let past = from_now(-60);
    for (expiry, says) in [
        (vec!["--expires-at", past.as_str()], "not in the future"),
        (vec!["--expires-at", "2030-01-01"], "--expires-at"),
        (vec!["--expires-in", "0s"], "more than 0s"),
        (vec!["--expires-in=-5m"], "more than 0s"),
        (vec!["--expires-in", "5m ago"], "more than 0s"),
        (vec!["--expires-in", "soon"], "not a duration"),
        (vec!["--expires-in", "1mo"], "months and years"),
        (vec!["--expires-in", "1y"], "months and years"),
        (vec!["--expires-in", "7000000d"], "9999"),
        (
            vec!["--expires-in", "1d", "--expires-at", "2030-01-01T00:00:00Z"],
            "cannot be used with",
        ),
    ] {
        let mut args = vec!["--name", "x", "--role", "r"];
        args.extend(&expiry);
        let run = store.act("create", ALICE, &args);
        assert_eq!(run.code, 2, "{expiry:?}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains(says), "{expiry:?}: {says}: {}", run.stderr);
    }
    assert_eq!(store.audit_len(), 1, "nothing was created");
}

#[test]
fn expires_in_takes_friendly_and_iso_durations_with_days_of_24_hours() {
    let store = Store::new();
    for (duration, secs) in [
        ("30d", 30 * 86_400),
        ("2w", 14 * 86_400),
        ("PT36H", 36 * 3600),
        ("P1DT12H", 36 * 3600),
        ("1h30m", 5400),
        ("90s", 90),
    ] {
        let (_, key) = store.create_with(ALICE, duration, &["--expires-in", duration]);
        let lifetime = timestamp(&key["expires_at"]).duration_since(timestamp(&key["created_at"]));
        let expected = jiff::SignedDuration::from_secs(secs);
        assert!(
            lifetime <= expected && lifetime > expected - jiff::SignedDuration::from_secs(10),
            "{duration}: lives {lifetime:?}"
        );
        assert_eq!(key["status"], "active");
    }
}

#[test]
fn a_key_past_its_expiry_is_expired_left_out_of_list_and_rejected_by_verify() {
    let store = Store::new();
    let later = from_now(3600);
    let (lasting, key) = store.create_with(ALICE, "lasting", &["--expires-at", &later]);
    assert_eq!(key["status"], "active");
    assert_eq!(timestamp(&key["expires_at"]), later.parse().unwrap());
    let (soon, _) = store.create_with(ALICE, "soon", &["--expires-at", &from_now(3)]);

    // The CLI runs on the system clock: wait for the expiry, bounded.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = store.show(&soon.id)["status"].clone();
        if status == "expired" {
            break;
        }
        assert_eq!(status, "active");
        assert!(Instant::now() < deadline, "never expired");
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(listed_ids(&store, false), [lasting.id.as_str()]);
    assert_eq!(listed_ids(&store, true), [lasting.id.as_str(), soon.id.as_str()]);
    let all = store.run(&["list", "--all", "--json"]).json_lines();
    assert_eq!(all[1]["status"], "expired");
    assert_rfc3339_utc(&all[1]["expires_at"]);
    let human = store.run(&["list", "--all"]);
    assert!(human.stdout.contains("expired"), "{}", human.stdout);
    assert!(!store.run(&["list"]).stdout.contains("soon"));

    let rejected = store.verify(&soon.secret, "10.0.0.1");
    assert_eq!(rejected.code, 1, "{rejected:?}");
    assert_eq!(rejected.json()["reason"], "expired");
    assert_eq!(store.verify(&lasting.secret, "10.0.0.1").code, 0);
}

#[test]
fn roll_gives_a_new_secret_once_and_without_grace_the_old_one_stops() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &["10.0.0.0/8"]);
    let run = store.act("roll", ALICE, &[&key.id, "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let rolled = run.json();
    assert_eq!(
        field_names(&rolled),
        names(&["id", "key", "previous_valid_until"])
    );
    assert_eq!(rolled["id"], key.id.as_str());
    let new = rolled["key"].as_str().unwrap();
    assert!(
        new.starts_with("klk_") && new.len() == 40 && new != key.secret,
        "{new}"
    );
    assert_rfc3339_utc(&rolled["previous_valid_until"]);

    assert_eq!(store.verify(new, "10.1.2.3").code, 0);
    let old = store.verify(&key.secret, "10.1.2.3");
    assert_eq!(old.code, 1, "{old:?}");
    assert_eq!(old.json()["reason"], "unknown_key");

    let shown = store.show(&key.id);
    assert_eq!(shown["name"], "bot");
    assert_eq!(shown["roles"], serde_json::json!(["notifier"]));
    assert_eq!(shown["whitelist"], serde_json::json!(["10.0.0.0/8"]));
    assert_eq!(shown["hint"], format!("klk_…{}", &new[36..]));

    let entries = store.run(&["audit", "--kind", "rolled", "--json"]).json_lines();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["previous_valid_until"], rolled["previous_valid_until"]);
    assert_eq!(
        entries[0]["previous_valid_until"], entries[0]["at"],
        "no grace: the previous secret stopped at the roll"
    );
    let later = [
        store.run(&["list", "--all", "--json"]),
        store.run(&["show", &key.id]),
        store.run(&["audit"]),
        store.run(&["audit", "--json"]),
    ];
    assert_absent(&later.iter().collect::<Vec<_>>(), new);
}

#[test]
fn roll_with_a_grace_keeps_the_old_secret_verifying_and_audit_shows_it() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    let run = store.act("roll", ROOT, &[&key.id, "--grace", "1h"]);
    assert_eq!(run.code, 0, "{run:?}");
    let line = run.stdout.lines().find(|l| l.contains("klk_")).unwrap();
    let new = line.split_whitespace().last().unwrap();
    assert_eq!(new.len(), 40, "{line}");
    assert_eq!(run.stdout.matches(new).count(), 1);
    assert!(
        run.stdout.contains("only time the key is shown"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("grace 1h"), "{}", run.stdout);

    assert_eq!(store.verify(new, "10.0.0.1").code, 0);
    assert_eq!(
        store.verify(&key.secret, "10.0.0.1").code,
        0,
        "the previous secret verifies during the grace"
    );
    let entry = &store.run(&["audit", "--kind", "rolled", "--json"]).json_lines()[0];
    assert_eq!(entry["actor"], "root");
    assert_eq!(
        timestamp(&entry["previous_valid_until"]).duration_since(timestamp(&entry["at"])),
        jiff::SignedDuration::from_hours(1)
    );
    let human = store.run(&["audit", "--kind", "rolled"]);
    assert!(human.stdout.contains("grace 1h"), "{}", human.stdout);

    for (grace, says) in [
        ("400d", "365 days"),
        ("-1h", "negative"),
        ("soon", "not a duration"),
    ] {
        let run = store.act("roll", ROOT, &[&key.id, &format!("--grace={grace}")]);
        assert_eq!(run.code, 2, "{grace}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains(says), "{grace}: {}", run.stderr);
    }
    assert_eq!(store.audit_len(), 2, "refused rolls write nothing");
}

#[test]
fn a_disabled_key_is_rejected_until_enabled_and_repeating_either_exits_2() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    let off = store.act("disable", ALICE, &[&key.id]);
    assert_eq!(off.code, 0, "{off:?}");
    assert!(off.stdout.starts_with("disabled key"), "{}", off.stdout);
    let rejected = store.verify(&key.secret, "10.0.0.1");
    assert_eq!(
        (rejected.code, rejected.json()["reason"].clone()),
        (1, "disabled".into())
    );
    assert_eq!(store.show(&key.id)["status"], "disabled");
    assert_eq!(
        listed_ids(&store, false),
        [key.id.as_str()],
        "a disabled key is live"
    );
    assert!(store.run(&["list"]).stdout.contains("disabled"));

    let again = store.act("disable", ALICE, &[&key.id]);
    assert_eq!(again.code, 2, "{again:?}");
    again.assert_one_error_line();
    assert!(again.stderr.contains("already disabled"), "{}", again.stderr);

    let on = store.act("enable", ALICE, &[&key.id]);
    assert_eq!(on.code, 0, "{on:?}");
    assert!(on.stdout.contains("active"), "{}", on.stdout);
    assert_eq!(store.verify(&key.secret, "10.0.0.1").code, 0);
    assert_eq!(store.show(&key.id)["status"], "active");
    let again = store.act("enable", ALICE, &[&key.id]);
    assert_eq!(again.code, 2, "{again:?}");
    assert!(again.stderr.contains("already enabled"), "{}", again.stderr);

    let kinds: Vec<String> = store
        .run(&["audit", "--json"])
        .json_lines()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["created", "disabled", "enabled"]);
}

#[test]
fn roll_disable_and_enable_of_a_deleted_key_exit_4() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    assert_eq!(store.act("disable", ALICE, &[&key.id]).code, 0);
    assert_eq!(store.act("delete", ALICE, &[&key.id]).code, 0);
    for command in ["roll", "disable", "enable"] {
        let run = store.act(command, ROOT, &[&key.id]);
        assert_eq!(run.code, 4, "{command}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains("deleted"), "{}", run.stderr);
    }
    for command in ["roll", "disable", "enable"] {
        let run = store.act(command, ROOT, &["00000000000000ff"]);
        assert_eq!(run.code, 4, "{command}: {run:?}");
    }
    assert_eq!(store.audit_len(), 3);
}

#[test]
fn only_the_owner_admin_or_a_super_admin_may_roll_disable_or_enable_and_refusals_are_kept() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &[]);
    // (command, actor, exit code), in an order that leaves each allowed one valid.
    let steps = [
        ("roll", BOB, 3),
        ("roll", USER, 3),
        ("roll", ALICE, 0),
        ("roll", ROOT, 0),
        ("disable", BOB, 3),
        ("disable", USER, 3),
        ("disable", ALICE, 0),
        ("enable", BOB, 3),
        ("enable", USER, 3),
        ("enable", ROOT, 0),
        ("disable", ROOT, 0),
        ("enable", ALICE, 0),
    ];
    for (command, actor, code) in steps {
        let run = store.act(command, actor, &[&key.id]);
        assert_eq!(run.code, code, "{command} by {}: {run:?}", actor[1]);
        if code == 3 {
            run.assert_one_error_line();
            assert!(run.stderr.contains("permission denied"), "{}", run.stderr);
        }
    }
    assert_eq!(store.audit_len(), 1 + 6, "refusals write nothing to the key log");

    let run = store.run(&["audit", "--refused", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let trail = run.json_lines();
    let refused: Vec<(&str, &str, &str, &str)> = trail
        .iter()
        .map(|a| {
            (
                a["action"].as_str().unwrap(),
                a["actor"].as_str().unwrap(),
                a["actor_role"].as_str().unwrap(),
                a["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        refused,
        [
            ("roll", "bob", "admin", "not_owner"),
            ("roll", "eve", "user", "not_an_admin"),
            ("disable", "bob", "admin", "not_owner"),
            ("disable", "eve", "user", "not_an_admin"),
            ("enable", "bob", "admin", "not_owner"),
            ("enable", "eve", "user", "not_an_admin"),
        ]
    );
    let fields = names(&[
        "at",
        "actor",
        "actor_role",
        "action",
        "key_id",
        "owner",
        "person",
        "via",
        "reason",
        "message",
    ]);
    for attempt in &trail {
        assert_eq!(field_names(attempt), fields);
        assert_eq!(attempt["key_id"], key.id.as_str());
        assert_rfc3339_utc(&attempt["at"]);
        assert!(!attempt["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(trail[0]["owner"], "alice");
    assert_eq!(trail[1]["owner"], Value::Null);

    let by_bob = store.run(&["audit", "--refused", "--actor", "bob", "--json"]);
    assert_eq!(by_bob.json_lines().len(), 3);
    let on_key = store.run(&["audit", "--refused", "--key", &key.id, "--json"]);
    assert_eq!(on_key.json_lines().len(), 6);
    let none = store.run(&["audit", "--refused", "--until", "2000-01-01T00:00:00Z"]);
    assert_eq!((none.code, none.stdout.trim()), (0, "no refused attempts match"));
    let human = store.run(&["audit", "--refused"]);
    assert!(human.stdout.starts_with("TIME (UTC)"), "{}", human.stdout);
    assert!(
        human.stdout.contains("was created by \"alice\""),
        "{}",
        human.stdout
    );
    let never = "00000000000000ff";
    assert_eq!(store.act("disable", USER, &[never]).code, 3);
    let aimed = store.run(&["audit", "--refused", "--key", never, "--json"]);
    assert_eq!(
        aimed.code, 0,
        "a refusal may name a key that never existed: {aimed:?}"
    );
    assert_eq!(aimed.json_lines().len(), 1);
    for conflict in [vec!["--kind", "rolled"], vec!["--at", "1"]] {
        let mut args = vec!["audit", "--refused"];
        args.extend(&conflict);
        let run = store.run(&args);
        assert_eq!(run.code, 2, "{conflict:?}: {run:?}");
        run.assert_one_error_line();
    }
}

#[test]
fn audit_kind_filters_the_lifecycle_kinds() {
    let store = Store::new();
    let key = store.create(ROOT, "bot", &["r"], &[]);
    let imported = store.run_with_stdin(
        &[
            "import-key",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            "--name",
            "legacy",
            "--role",
            "r",
        ],
        "legacy_secret_0123456789\n",
    );
    assert_eq!(imported.code, 0, "{imported:?}");
    for command in ["roll", "disable", "enable"] {
        assert_eq!(store.act(command, ROOT, &[&key.id]).code, 0);
    }
    for kind in ["imported", "rolled", "disabled", "enabled"] {
        let entries = store.run(&["audit", "--kind", kind, "--json"]).json_lines();
        assert_eq!(entries.len(), 1, "{kind}");
        assert_eq!(entries[0]["kind"], kind);
    }
}

#[test]
fn verify_counts_as_a_use_in_last_used_at() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &["10.0.0.0/8"]);
    assert_eq!(store.show(&key.id)["last_used_at"], Value::Null);
    assert_eq!(store.verify(&key.secret, "192.0.2.1").code, 1);
    assert_eq!(
        store.show(&key.id)["last_used_at"],
        Value::Null,
        "a rejection is not a use"
    );
    let before = jiff::Timestamp::now();
    assert_eq!(store.verify(&key.secret, "10.0.0.1").code, 0);
    let used = timestamp(&store.show(&key.id)["last_used_at"]);
    let minute = jiff::SignedDuration::from_mins(1);
    assert!(
        used > before - minute && used <= jiff::Timestamp::now(),
        "{used} is not the minute of the verify ({before})"
    );
    assert_eq!(used.as_second() % 60, 0, "to the minute");
    let listed = store.run(&["list", "--json"]).json_lines();
    assert_eq!(timestamp(&listed[0]["last_used_at"]), used);
    assert!(store.run(&["show", &key.id]).stdout.contains("last used"));
}

const IMPORT_ROOT: [&str; 9] = [
    "import-key",
    "--actor",
    "root",
    "--actor-role",
    "super-admin",
    "--name",
    "legacy bot",
    "--role",
    "bot",
];

#[test]
fn import_key_adopts_a_secret_from_stdin_that_then_verifies() {
    let store = Store::new();
    let secret = "Legacy-platform_key_000123";
    let mut args = IMPORT_ROOT.to_vec();
    args.extend(["--ip", "10.0.0.0/8", "--expires-in", "30d", "--json"]);
    let run = store.run_with_stdin(&args, &format!("{secret}\n"));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let key = run.json();
    assert_eq!(field_names(&key), names(&KEY_FIELDS), "no secret in the output");
    assert_eq!(key["imported"], true);
    assert_eq!(key["hint"], "…", "a foreign secret shows nothing of itself");
    assert_eq!(key["name"], "legacy bot");
    assert_eq!(key["status"], "active");
    assert_rfc3339_utc(&key["expires_at"]);
    let id = key["id"].as_str().unwrap();

    let accepted = store.verify(secret, "10.1.2.3");
    assert_eq!(accepted.code, 0, "{accepted:?}");
    assert_eq!(accepted.json()["id"], id);
    assert_eq!(store.verify(secret, "192.0.2.1").code, 1);
    assert_eq!(
        store
            .run(&["audit", "--kind", "imported", "--json"])
            .json_lines()
            .len(),
        1
    );

    // A secret in keyledger's own format, issued by another store, keeps its hint.
    let other = Store::new();
    let theirs = other.create(ALICE, "elsewhere", &["r"], &[]);
    let run = store.run_with_stdin(&IMPORT_ROOT, &theirs.secret);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.starts_with("imported key"), "{}", run.stdout);
    assert_eq!(store.verify(&theirs.secret, "10.0.0.1").code, 0);
    let adopted = store.run(&["list", "--json"]).json_lines();
    assert_eq!(adopted[1]["hint"], format!("klk_…{}", &theirs.secret[36..]));

    let later = [
        run,
        store.run(&["list", "--all"]),
        store.run(&["show", id]),
        store.run(&["audit"]),
        store.run(&["audit", "--json"]),
        store.run(&["check"]),
    ];
    assert_absent(&later.iter().collect::<Vec<_>>(), secret);
    assert!(!store_files_hold(&store.path(), secret.as_bytes()));
}

#[test]
fn import_key_refuses_a_secret_on_the_command_line_or_one_that_breaks_the_rule() {
    let store = Store::new();
    let taken = "already_adopted_secret_01";
    assert_eq!(store.run_with_stdin(&IMPORT_ROOT, taken).code, 0);
    let on_line = "on_the_command_line_0123";
    let mut with_arg = IMPORT_ROOT.to_vec();
    with_arg.push(on_line);
    let argument = store.run_with_stdin(&with_arg, "");
    assert_eq!(argument.code, 2, "{argument:?}");
    argument.assert_one_error_line();
    assert!(argument.stderr.contains("standard input"), "{}", argument.stderr);

    let mut runs = vec![argument];
    let too_long = "a_secret_far_too_long_for_the_rule".repeat(8);
    for (stdin, says) in [
        ("short_secret", "16 to 256 printable"),
        ("bad\u{7f}character_secret_0123", "16 to 256 printable"),
        (too_long.as_str(), "16 to 256 printable"),
        ("", "no key on standard input"),
        (taken, "is known to the store"),
    ] {
        let run = store.run_with_stdin(&IMPORT_ROOT, &format!("{stdin}\n"));
        assert_eq!(run.code, 2, "{stdin}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
        if !stdin.is_empty() {
            assert_absent(&[&run], stdin);
        }
        runs.push(run);
    }
    let user = store.run_with_stdin(
        &[
            "import-key",
            "--actor",
            "eve",
            "--actor-role",
            "user",
            "--name",
            "x",
            "--role",
            "r",
        ],
        "user_tries_this_secret_01\n",
    );
    assert_eq!(user.code, 3, "{user:?}");
    let trail = store.run(&["audit", "--refused", "--json"]).json_lines();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0]["action"], "import");
    assert_eq!(trail[0]["key_id"], Value::Null);
    assert_absent(&runs.iter().collect::<Vec<_>>(), on_line);
    assert_eq!(store.audit_len(), 1, "only the first adoption was written");
}

/// The SHA-256 of `text` in lowercase hex, as a platform that kept only hashes has it.
fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn import_keys_adopts_a_json_lines_file_in_one_commit() {
    let store = Store::new();
    let hashed = "hashed_only_secret_000042";
    let digest = sha256_hex(hashed);
    let file = store.file(
        "keys.jsonl",
        &format!(
            "{}\n{}\r\n{}\n",
            r#"{"name": "plain", "roles": ["bot"], "key": "file_secret_0000000001"}"#,
            r#"{"name": "fenced", "roles": ["bot", "reader"], "ips": ["10.0.0.0/8", "2001:db8::1"], "expires_at": "2099-01-01T00:00:00Z", "key": "file_secret_0000000002"}"#,
            format_args!(r#"{{"name": "hashed", "roles": ["sync"], "sha256": "{digest}"}}"#),
        ),
    );
    let run = store.import_keys(ROOT, &file, &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, "");
    let imported = run.json_lines();
    assert_eq!(imported.len(), 3);
    for (n, entry) in (1..).zip(&imported) {
        assert_eq!(field_names(entry), names(&["line", "id"]));
        assert_eq!(entry["line"], n);
    }
    let ids: Vec<String> = imported
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed_ids(&store, false), ids);

    let fenced = store.show(&ids[1]);
    assert_eq!(fenced["imported"], true);
    assert_eq!(
        fenced["whitelist"],
        serde_json::json!(["10.0.0.0/8", "2001:db8::1/128"])
    );
    assert_eq!(
        timestamp(&fenced["expires_at"]),
        "2099-01-01T00:00:00Z".parse().unwrap()
    );
    assert_eq!(store.verify("file_secret_0000000001", "192.0.2.1").code, 0);
    assert_eq!(store.verify("file_secret_0000000002", "10.0.0.1").code, 0);
    assert_eq!(store.verify("file_secret_0000000002", "192.0.2.1").code, 1);
    let by_hash = store.verify(hashed, "192.0.2.1");
    assert_eq!(by_hash.code, 0, "{by_hash:?}");
    assert_eq!(by_hash.json()["id"], ids[2].as_str());
    assert_eq!(
        store.verify(&digest, "192.0.2.1").code,
        1,
        "the hash is not the key"
    );

    let trail = store.run(&["audit", "--json"]).json_lines();
    assert!(
        trail
            .iter()
            .all(|e| e["kind"] == "imported" && e["actor"] == "root")
    );
    assert_eq!(trail.len(), 3);

    let second = store.file(
        "more.jsonl",
        r#"{"name": "more", "roles": ["bot"], "key": "file_secret_0000000003"}"#,
    );
    let human = store.import_keys(ROOT, &second, &[]);
    assert_eq!(human.code, 0, "{human:?}");
    assert!(human.stdout.starts_with("LINE"), "{}", human.stdout);
    assert!(human.stdout.contains("imported 1 key from"), "{}", human.stdout);

    let later = [
        run,
        human,
        store.run(&["list", "--all", "--json"]),
        store.run(&["audit"]),
        store.run(&["show", &ids[2]]),
    ];
    let later: Vec<&Run> = later.iter().collect();
    for secret in [
        "file_secret_0000000001",
        "file_secret_0000000002",
        hashed,
        digest.as_str(),
    ] {
        assert_absent(&later, secret);
    }
    assert!(!store_files_hold(&store.path(), b"file_secret_0000000001"));
    assert!(!store_files_hold(&store.path(), digest.as_bytes()));
}

#[test]
fn import_keys_names_the_first_bad_line_and_writes_nothing() {
    let store = Store::new();
    let taken = "taken_by_the_store_00001";
    assert_eq!(store.run_with_stdin(&IMPORT_ROOT, taken).code, 0);
    let good = [
        r#"{"name": "one", "roles": ["bot"], "key": "good_secret_00000000001"}"#,
        r#"{"name": "two", "roles": ["bot"], "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}"#,
    ];
    let bad_secret = "leak_me_not_00000000009";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(r#"{{"name": "x", "roles": ["bot"], "key": "{bad_secret}", "note": 1}}"#),
            "unknown field `note`",
        ),
        (
            format!(r#"{{"name": "x", "roles": ["bot"], "key": "{bad_secret}""#),
            "EOF",
        ),
        (String::new(), "blank"),
        ("   ".into(), "blank"),
        (r#"{"name": "x", "roles": ["bot"]}"#.into(), "missing the secret"),
        (
            format!(r#"{{"name": "x", "roles": ["bot"], "key": "{bad_secret}", "sha256": "00"}}"#),
            "not both",
        ),
        (
            r#"{"name": "x", "roles": ["bot"], "key": 123456789012345678901234}"#.into(),
            "must be a string",
        ),
        (
            r#"{"name": "x", "roles": ["bot"], "key": "short"}"#.into(),
            "16 to 256 printable",
        ),
        (
            r#"{"name": "x", "roles": ["bot"], "sha256": "ABCDEF"}"#.into(),
            "64 lowercase hexadecimal",
        ),
        (
            format!(r#"{{"name": "x", "roles": ["Bad Role"], "key": "{bad_secret}"}}"#),
            "invalid role",
        ),
        (
            format!(r#"{{"name": "  ", "roles": ["bot"], "key": "{bad_secret}"}}"#),
            "invalid name",
        ),
        (
            format!(r#"{{"name": "x", "roles": ["bot"], "ips": ["300.0.0.1"], "key": "{bad_secret}"}}"#),
            "invalid network",
        ),
        (
            format!(
                r#"{{"name": "x", "roles": ["bot"], "expires_at": "2001-01-01T00:00:00Z", "key": "{bad_secret}"}}"#
            ),
            "not in the future",
        ),
        (
            format!(r#"{{"name": "x", "roles": ["bot"], "expires_at": "tomorrow", "key": "{bad_secret}"}}"#),
            "RFC 3339",
        ),
        (
            format!(r#"{{"name": "x", "roles": "bot", "key": "{bad_secret}"}}"#),
            "expected a sequence",
        ),
        (
            r#"{"name": "x", "roles": ["bot"], "key": "good_secret_00000000001"}"#.into(),
            "is known to the store",
        ),
        (
            format!(r#"{{"name": "x", "roles": ["bot"], "key": "{taken}"}}"#),
            "is known to the store",
        ),
        ("[1, 2]".into(), "line 3"),
    ];
    let before = store.audit_len();
    for (line, says) in &cases {
        let file = store.file("bad.jsonl", &format!("{}\n{}\n{line}\n", good[0], good[1]));
        let run = store.import_keys(ROOT, &file, &["--json"]);
        assert_eq!(run.code, 2, "{line}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains("error: line 3: "), "{line}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{line}: {says}: {}", run.stderr);
        assert!(run.stderr.contains("nothing was imported"), "{}", run.stderr);
        assert_eq!(run.stdout, "");
        assert_absent(&[&run], bad_secret);
        assert_absent(&[&run], "good_secret_00000000001");
        assert_absent(&[&run], taken);
        assert_absent(&[&run], "123456789012345678901234");
    }
    assert_eq!(store.audit_len(), before, "nothing was written");
    assert_eq!(store.verify("good_secret_00000000001", "10.0.0.1").code, 1);

    let empty = store.file("empty.jsonl", "");
    let run = store.import_keys(ROOT, &empty, &[]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("holds no keys"), "{}", run.stderr);
    let missing = store.import_keys(ROOT, &store.dir.path().join("absent.jsonl"), &[]);
    assert_eq!(missing.code, 2, "{missing:?}");
    missing.assert_one_error_line();

    let denied = store.file(
        "denied.jsonl",
        r#"{"name": "x", "roles": ["super-admin"], "key": "would_be_super_admin_01"}"#,
    );
    let run = store.import_keys(ALICE, &denied, &[]);
    assert_eq!(run.code, 3, "an admin may not grant super-admin: {run:?}");
    run.assert_one_error_line();
    assert_eq!(store.audit_len(), before);
}

#[test]
fn import_keys_makes_a_new_store_but_a_bad_file_leaves_none() {
    let store = Store::new();
    let bad = store.file("bad.jsonl", "{}\n");
    assert_eq!(store.import_keys(ROOT, &bad, &[]).code, 2);
    assert!(!store.path().exists(), "a refused file creates no store");
    let good = store.file(
        "good.jsonl",
        r#"{"name": "first", "roles": ["bot"], "key": "first_adopted_secret_1"}"#,
    );
    let run = store.import_keys(ROOT, &good, &[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(store.verify("first_adopted_secret_1", "10.0.0.1").code, 0);
}

impl Store {
    /// `limit KEY_ID` as `actor` with `args`.
    fn limit(&self, actor: [&str; 4], id: &str, args: &[&str]) -> Run {
        let mut all = vec![id];
        all.extend_from_slice(args);
        self.act("limit", actor, &all)
    }

    /// `verify --times N --json`: each answer's reason (`null` when accepted), and the run.
    fn verify_times(&self, key: &str, times: u32) -> (Vec<Value>, Run) {
        let n = times.to_string();
        let run = self.run_with_stdin(&["verify", "--ip", "192.0.2.1", "--times", &n, "--json"], key);
        let reasons = run.json_lines().iter().map(|a| a["reason"].clone()).collect();
        (reasons, run)
    }
}

#[test]
fn a_key_created_with_rate_limits_shows_them_and_verify_refuses_past_them_with_exit_1() {
    let store = Store::new();
    let (key, json) = store.create_with(
        ALICE,
        "metered",
        &["--rate-limit", "10/1d", "--rate-limit", "2/1h"],
    );
    assert_eq!(
        json["rate_limits"],
        serde_json::json!([{"limit": 2, "window": "1h"}, {"limit": 10, "window": "1d"}]),
        "shortest window first"
    );
    let shown = store.run(&["show", &key.id]);
    assert!(
        shown.stdout.contains("\nrate limits 2/1h, 10/1d\n"),
        "{}",
        shown.stdout
    );
    let listed = store.run(&["list"]);
    assert!(listed.stdout.contains("RATE LIMITS"), "{}", listed.stdout);
    assert!(listed.stdout.contains("  2/1h, 10/1d  "), "{}", listed.stdout);
    let human = store.act(
        "create",
        ALICE,
        &["--name", "human", "--role", "r", "--rate-limit", "100/1m"],
    );
    assert!(
        human.stdout.contains("\n  limits     100/1m\n"),
        "{}",
        human.stdout
    );

    let (reasons, run) = store.verify_times(&key.secret, 3);
    assert_eq!(
        reasons,
        [Value::Null, Value::Null, Value::from("rate_limited")],
        "{run:?}"
    );
    // Only the refusal says when to retry: the next of 2/1h is due half an hour on.
    let answers = run.json_lines();
    assert!(
        answers[..2].iter().all(|a| a.get("retry_after_s").is_none()),
        "{run:?}"
    );
    let wait = answers[2]["retry_after_s"].as_u64().unwrap();
    assert!((1790..=1800).contains(&wait), "{run:?}");
    assert_eq!(run.code, 1, "the last answer was a refusal: {run:?}");
    assert_eq!(run.stderr, "", "a rejection is an answer, not an error");
    let human = store.run_with_stdin(&["verify", "--ip", "192.0.2.1", "--times", "3"], &key.secret);
    assert_eq!(human.code, 1, "{human:?}");
    let lines: Vec<&str> = human.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{human:?}");
    assert!(lines[1].starts_with("accepted: key "), "{human:?}");
    // 1800 s apart on average: the next may come when the first request is 1800 s old.
    let retry: u64 = lines[2]
        .strip_prefix("rejected: key is past its rate limit of 2/1h; retry in ")
        .and_then(|s| s.strip_suffix('s'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{human:?}"));
    assert!((1790..=1800).contains(&retry), "{human:?}");
    // The buckets live in the process that verifies: each run starts with them full.
    let (reasons, run) = store.verify_times(&key.secret, 1);
    assert_eq!((reasons, run.code), (vec![Value::Null], 0));
    let unlimited = store.create(ALICE, "unlimited", &["r"], &[]);
    let (reasons, run) = store.verify_times(&unlimited.secret, 50);
    assert!(reasons.iter().all(Value::is_null), "{run:?}");
    assert_eq!(run.code, 0);
    assert_eq!(store.show(&unlimited.id)["rate_limits"], serde_json::json!([]));
    assert!(
        store
            .run(&["show", &unlimited.id])
            .stdout
            .contains("\nrate limits none\n")
    );
}

#[test]
fn limit_sets_changes_and_removes_a_keys_rate_limits() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["r"], &[]);
    let set = store.limit(
        ALICE,
        &key.id,
        &["--rate-limit", "100/1m", "--rate-limit", "20/1s"],
    );
    assert_eq!(set.code, 0, "{set:?}");
    assert_eq!(
        set.stdout,
        format!(
            "set the rate limits of key {} \"bot\"; its rate limits are now: 20/1s, 100/1m\n",
            key.id
        )
    );
    let changed = store.limit(ALICE, &key.id, &["--rate-limit", "2/1h", "--json"]);
    assert_eq!(changed.code, 0, "{changed:?}");
    let json = changed.json();
    assert_eq!(field_names(&json), names(&KEY_FIELDS));
    assert_eq!(
        json["rate_limits"],
        serde_json::json!([{"limit": 2, "window": "1h"}])
    );
    assert_eq!(store.show(&key.id)["rate_limits"], json["rate_limits"]);
    let (reasons, _) = store.verify_times(&key.secret, 3);
    assert_eq!(reasons[2], "rate_limited");

    let same = store.limit(ALICE, &key.id, &["--rate-limit", "2/60m"]);
    assert_eq!(same.code, 2, "the same limits change nothing: {same:?}");
    same.assert_one_error_line();

    let removed = store.limit(ALICE, &key.id, &["--no-rate-limit"]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert_eq!(
        removed.stdout,
        format!(
            "removed the rate limits of key {} \"bot\"; its rate limits are now: none\n",
            key.id
        )
    );
    assert_eq!(store.show(&key.id)["rate_limits"], serde_json::json!([]));
    let (reasons, run) = store.verify_times(&key.secret, 10);
    assert!(reasons.iter().all(Value::is_null), "{run:?}");
    let again = store.limit(ALICE, &key.id, &["--no-rate-limit"]);
    assert_eq!(again.code, 2, "{again:?}");
    again.assert_one_error_line();

    let unknown = store.limit(ALICE, "00000000000000ff", &["--rate-limit", "1/1s"]);
    assert_eq!(unknown.code, 4, "{unknown:?}");
    store.act("delete", ALICE, &[&key.id]);
    let deleted = store.limit(ALICE, &key.id, &["--rate-limit", "1/1s"]);
    assert_eq!(deleted.code, 4, "{deleted:?}");
    assert!(deleted.stderr.contains("has been deleted"), "{deleted:?}");
}

#[test]
fn limit_takes_exactly_one_of_rate_limit_and_no_rate_limit() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["r"], &[]);
    let before = store.audit_len();
    let both = store.limit(ALICE, &key.id, &["--rate-limit", "1/1s", "--no-rate-limit"]);
    assert_eq!(both.code, 2, "{both:?}");
    both.assert_one_error_line();
    assert!(both.stderr.contains("cannot be used with"), "{both:?}");
    let neither = store.limit(ALICE, &key.id, &[]);
    assert_eq!(neither.code, 2, "{neither:?}");
    neither.assert_one_error_line();
    assert!(neither.stderr.contains("--rate-limit"), "{neither:?}");
    assert_eq!(store.audit_len(), before);
}

#[test]
fn bad_rate_limits_exit_2_and_write_nothing() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["r"], &[]);
    let before = store.audit_len();
    let five = ["1/1s", "1/2s", "1/3s", "1/4s", "1/5s"];
    let cases: [(Vec<&str>, &str); 5] = [
        (vec!["0/1m"], "admits nothing"),
        (vec!["5/1w"], "unit that is not s, m, h or d"),
        (vec!["lots"], "LIMIT/WINDOW"),
        (five.to_vec(), "at most 4"),
        (vec!["1/1m", "2/60s"], "same window"),
    ];
    for (limits, says) in &cases {
        let mut args: Vec<&str> = Vec::new();
        for l in limits {
            args.extend(["--rate-limit", l]);
        }
        let changed = store.limit(ALICE, &key.id, &args);
        let mut create = vec!["--name", "x", "--role", "r"];
        create.extend(&args);
        let created = store.act("create", ALICE, &create);
        for run in [changed, created] {
            assert_eq!(run.code, 2, "{limits:?}: {run:?}");
            run.assert_one_error_line();
            assert!(run.stderr.contains(says), "{limits:?}: {says}: {}", run.stderr);
        }
    }
    assert_eq!(store.audit_len(), before, "nothing was written");
    assert_eq!(store.show(&key.id)["rate_limits"], serde_json::json!([]));
    let four = store.limit(
        ALICE,
        &key.id,
        &[
            "--rate-limit",
            "1/1s",
            "--rate-limit",
            "1/2s",
            "--rate-limit",
            "1/3s",
            "--rate-limit",
            "1/4s",
        ],
    );
    assert_eq!(four.code, 0, "four limits are allowed: {four:?}");
}

#[test]
fn an_admin_cannot_change_another_admins_rate_limits_and_the_refusal_is_kept() {
    let store = Store::new();
    let key = store.create(ALICE, "alices bot", &["r"], &[]);
    let before = store.audit_len();
    let refused = store.limit(BOB, &key.id, &["--rate-limit", "1/1d"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    refused.assert_one_error_line();
    assert!(refused.stderr.contains("permission denied"), "{refused:?}");
    let refused = store.limit(BOB, &key.id, &["--no-rate-limit"]);
    assert_eq!(refused.code, 3, "{refused:?}");
    assert_eq!(store.audit_len(), before);
    let trail = store.run(&["audit", "--refused", "--json"]).json_lines();
    assert_eq!(trail.len(), 2, "{trail:?}");
    assert!(
        trail
            .iter()
            .all(|a| a["action"] == "limit" && a["actor"] == "bob" && a["key_id"] == key.id.as_str()),
        "{trail:?}"
    );
    let root = store.limit(ROOT, &key.id, &["--rate-limit", "1/1d"]);
    assert_eq!(root.code, 0, "a super admin changes any key's limits: {root:?}");
}

#[test]
fn audit_shows_rate_limit_changes_and_filters_them_by_kind() {
    let store = Store::new();
    let (key, _) = store.create_with(ALICE, "metered", &["--rate-limit", "2/1h"]);
    store.create(ALICE, "plain", &["r"], &[]);
    assert_eq!(
        store
            .limit(
                ALICE,
                &key.id,
                &["--rate-limit", "20/1s", "--rate-limit", "100/1m"]
            )
            .code,
        0
    );
    assert_eq!(store.limit(ROOT, &key.id, &["--no-rate-limit"]).code, 0);

    let changes = store
        .run(&["audit", "--kind", "limits_changed", "--json"])
        .json_lines();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes
            .iter()
            .all(|e| e["kind"] == "limits_changed" && e["key_id"] == key.id.as_str())
    );
    assert_eq!(
        changes[0]["rate_limits"],
        serde_json::json!([{"limit": 20, "window": "1s"}, {"limit": 100, "window": "1m"}])
    );
    assert_eq!(
        (changes[0]["actor"].as_str(), changes[1]["actor"].as_str()),
        (Some("alice"), Some("root"))
    );
    assert_eq!(changes[1]["rate_limits"], serde_json::json!([]));
    let created = store.run(&["audit", "--kind", "created", "--json"]).json_lines();
    assert_eq!(
        created[0]["rate_limits"],
        serde_json::json!([{"limit": 2, "window": "1h"}])
    );
    assert_eq!(created[1]["rate_limits"], serde_json::json!([]));

    let human = store.run(&["audit"]).stdout;
    let line = |kind: &str, n: usize| -> String {
        human
            .lines()
            .filter(|l| l.contains(kind))
            .nth(n)
            .unwrap_or_else(|| panic!("no {kind} line {n}: {human}"))
            .to_owned()
    };
    assert!(
        line("created", 0).ends_with("whitelist: any address; rate limits: 2/1h"),
        "{human}"
    );
    assert!(line("created", 1).ends_with("whitelist: any address"), "{human}");
    assert!(
        line("limits_changed", 0).ends_with("rate limits: 20/1s, 100/1m"),
        "{human}"
    );
    assert!(
        line("limits_changed", 1).ends_with("rate limits removed"),
        "{human}"
    );
    let at = store.run(&["audit", "--at", "3", "--key", &key.id]);
    assert!(at.stdout.contains("alice limits_changed key"), "{at:?}");
    assert!(at.stdout.contains("20/1s, 100/1m"), "{at:?}");
}

#[test]
fn import_lines_take_rate_limits_and_a_bad_one_names_its_line() {
    let store = Store::new();
    let file = store.file(
        "keys.jsonl",
        concat!(
            r#"{"name": "metered", "roles": ["bot"], "key": "limited_secret_00000001", "rate_limits": [{"limit": 100, "window": "1m"}, {"limit": 2, "window": "1s"}]}"#,
            "\n",
            r#"{"name": "free", "roles": ["bot"], "key": "limited_secret_00000002", "rate_limits": []}"#,
            "\n",
        ),
    );
    let run = store.import_keys(ROOT, &file, &["--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let ids: Vec<String> = run
        .json_lines()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        store.show(&ids[0])["rate_limits"],
        serde_json::json!([{"limit": 2, "window": "1s"}, {"limit": 100, "window": "1m"}])
    );
    assert_eq!(store.show(&ids[1])["rate_limits"], serde_json::json!([]));
    let (reasons, _) = store.verify_times("limited_secret_00000001", 3);
    assert_eq!(reasons[2], "rate_limited");
    let adopted = store.run(&["audit", "--kind", "imported", "--json"]).json_lines();
    assert_eq!(adopted[0]["rate_limits"], store.show(&ids[0])["rate_limits"]);

    let one = store.run_with_stdin(
        &[
            "import-key",
            "--actor",
            "root",
            "--actor-role",
            "super-admin",
            "--name",
            "one",
            "--role",
            "bot",
            "--rate-limit",
            "5/1h",
            "--json",
        ],
        "limited_secret_00000003",
    );
    assert_eq!(one.code, 0, "{one:?}");
    assert_eq!(
        one.json()["rate_limits"],
        serde_json::json!([{"limit": 5, "window": "1h"}])
    );

    let before = store.audit_len();
    let good = r#"{"name": "good", "roles": ["bot"], "key": "limited_secret_00000004"}"#;
    let five = (1..=5)
        .map(|s| format!(r#"{{"limit": 1, "window": "{s}s"}}"#))
        .collect::<Vec<_>>()
        .join(", ");
    for (limits, says) in [
        (r#"[{"limit": 0, "window": "1m"}]"#.to_owned(), "admits nothing"),
        (r#"[{"limit": 5, "window": "1w"}]"#.to_owned(), "rate limit"),
        (
            r#"[{"limit": 5, "window": "1m", "burst": 9}]"#.to_owned(),
            "unknown field",
        ),
        (r#"[{"limit": -1, "window": "1m"}]"#.to_owned(), "invalid"),
        (r#"{"limit": 5, "window": "1m"}"#.to_owned(), "invalid type"),
        (format!("[{five}]"), "at most 4"),
        (
            r#"[{"limit": 1, "window": "1m"}, {"limit": 2, "window": "60s"}]"#.to_owned(),
            "same window",
        ),
    ] {
        let bad = format!(
            r#"{{"name": "bad", "roles": ["bot"], "key": "limited_secret_00000005", "rate_limits": {limits}}}"#
        );
        let file = store.file("bad.jsonl", &format!("{good}\n{bad}\n"));
        let run = store.import_keys(ROOT, &file, &[]);
        assert_eq!(run.code, 2, "{limits}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.starts_with("error: line 2: "), "{limits}: {run:?}");
        assert!(run.stderr.contains(says), "{limits}: {says}: {run:?}");
        assert!(run.stderr.contains("nothing was imported"), "{run:?}");
        assert!(!run.stderr.contains("limited_secret_00000005"), "{run:?}");
    }
    assert_eq!(store.audit_len(), before, "nothing was imported");
}

impl Store {
    /// `credits KEY_ID` as `actor` with `args`.
    fn credits(&self, actor: [&str; 4], id: &str, args: &[&str]) -> Run {
        let mut all = vec![id];
        all.extend_from_slice(args);
        self.act("credits", actor, &all)
    }
}

#[test]
fn credits_are_spent_across_runs_topped_up_and_removed_with_exit_1_at_zero() {
    let store = Store::new();
    let (key, json) = store.create_with(ALICE, "metered", &["--credits", "3", "--refill", "3/1h"]);
    assert_eq!(json["credits"]["remaining"], 3);
    assert_eq!(
        json["credits"]["refill"],
        serde_json::json!({"amount": 3, "every": "1h"})
    );
    let (reasons, run) = store.verify_times(&key.secret, 2);
    assert_eq!(reasons, [Value::Null, Value::Null], "{run:?}");
    assert_eq!(run.json_lines()[1]["credits_remaining"], 1);
    // What a run spent is saved when it ends: the next run goes on from it.
    let (reasons, run) = store.verify_times(&key.secret, 2);
    assert_eq!(reasons, [Value::Null, Value::from("usage_exceeded")], "{run:?}");
    assert_eq!(run.code, 1, "{run:?}");
    let wait = run.json_lines()[1]["retry_after_s"].as_u64().unwrap();
    assert!((3590..=3600).contains(&wait), "{run:?}");
    let heavy = store.run_with_stdin(&["verify", "--ip", "192.0.2.1", "--cost", "0"], &key.secret);
    assert_eq!(heavy.code, 0, "a cost of 0 only looks: {heavy:?}");
    assert!(heavy.stdout.contains("credits left: 0"), "{heavy:?}");

    let shown = store.run(&["show", &key.id]);
    assert!(
        shown
            .stdout
            .contains("\ncredits     0 left, back up to 3 every 1h (next "),
        "{}",
        shown.stdout
    );
    assert!(store.run(&["list"]).stdout.contains("CREDITS"));

    let added = store.credits(ALICE, &key.id, &["--add", "5"]);
    assert_eq!(added.code, 0, "{added:?}");
    assert!(
        added.stdout.starts_with(&format!(
            "added 5 credits to key {} \"metered\"; its credits are now: 5 left",
            key.id
        )),
        "{added:?}"
    );
    let bob = store.credits(BOB, &key.id, &["--add", "5"]);
    assert_eq!(bob.code, 3, "another admin's key: {bob:?}");
    bob.assert_one_error_line();
    for bad in [
        &["--add", "0"][..],
        &["--set", "-1"],
        &["--set", "9007199254740993"],
        &["--set", "5", "--refill", "5/30s"],
        &["--refill", "5/1h"],
        &["--set", "5", "--add", "5"],
        &[],
    ] {
        let run = store.credits(ALICE, &key.id, bad);
        assert_eq!(run.code, 2, "{bad:?}: {run:?}");
        run.assert_one_error_line();
    }
    let set = store.credits(ALICE, &key.id, &["--set", "100", "--json"]);
    assert_eq!(
        set.json()["credits"],
        serde_json::json!({"remaining": 100, "refill": null})
    );
    let removed = store.credits(ALICE, &key.id, &["--remove"]);
    assert_eq!(removed.code, 0, "{removed:?}");
    assert!(
        removed
            .stdout
            .ends_with("its credits are now: none (unmetered)\n"),
        "{removed:?}"
    );
    let (reasons, _) = store.verify_times(&key.secret, 5);
    assert!(reasons.iter().all(Value::is_null));
    let audit = store.run(&["audit", "--key", &key.id]);
    for detail in [
        "credits set: 3, back up to 3 every 1h",
        "+ 5 credits",
        "credits set: 100",
        "credits removed",
    ] {
        assert!(audit.stdout.contains(detail), "{detail}: {}", audit.stdout);
    }
}

#[test]
fn usage_shows_a_keys_verifications_this_hour_as_a_table_and_as_json() {
    let store = Store::new();
    let key = store.create(ALICE, "bot", &["notifier"], &["10.0.0.0/8"]);
    assert_eq!(store.verify(&key.secret, "10.1.2.3").code, 0);
    assert_eq!(store.verify(&key.secret, "10.1.2.3").code, 0);
    assert_eq!(store.verify(&key.secret, "192.0.2.1").code, 1);

    let json = store.run(&["usage", &key.id, "--json"]);
    assert_eq!(json.code, 0, "{json:?}");
    let json = json.json();
    assert_eq!(field_names(&json), names(&["key_id", "granularity", "buckets"]));
    assert_eq!(
        (json["key_id"].as_str(), json["granularity"].as_str()),
        (Some(key.id.as_str()), Some("hour"))
    );
    let buckets = json["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 24, "the last 24 hours by default");
    let now = buckets.last().unwrap();
    assert_eq!(field_names(now), names(&["start", "accepted", "rejected"]));
    assert_eq!(now["accepted"], 2);
    assert_eq!(now["rejected"], serde_json::json!({"ip_not_whitelisted": 1}));
    assert!(now["start"].as_str().unwrap().ends_with(":00:00Z"), "{now}");
    assert_eq!(buckets[0]["accepted"], 0);

    let days = store
        .run(&["usage", &key.id, "--granularity", "day", "--json"])
        .json();
    let days = days["buckets"].as_array().unwrap();
    assert_eq!(days.len(), 30, "the last 30 days by default");
    assert_eq!(days.last().unwrap()["accepted"], 2);
    assert!(days[29]["start"].as_str().unwrap().ends_with("T00:00:00Z"));

    let human = store.run(&["usage", &key.id]);
    assert_eq!(human.code, 0, "{human:?}");
    let last = human.stdout.lines().last().unwrap();
    assert!(
        last.contains("  2  ") && last.ends_with("ip_not_whitelisted 1"),
        "{}",
        human.stdout
    );
    assert!(human.stdout.contains("START"), "{}", human.stdout);

    for (args, code, says) in [
        (
            vec!["usage", key.id.as_str(), "--since", "2020-01-01T00:00:00Z"],
            2,
            "30 days",
        ),
        (
            vec![
                "usage",
                key.id.as_str(),
                "--since",
                "2030-01-02T00:00:00Z",
                "--until",
                "2030-01-01T00:00:00Z",
            ],
            2,
            "after until",
        ),
        (vec!["usage", "00000000000000ff"], 4, "not found"),
    ] {
        let run = store.run(&args);
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }
    assert_eq!(store.run(&["usage", &key.id, "--granularity", "week"]).code, 2);
}

#[test]
fn a_fleet_usage_interval_out_of_range_is_refused_before_any_connection() {
    let store = Store::new();
    let key_file = store.dir.path().join("chain.key");
    std::fs::write(&key_file, format!("{}\n", "cd".repeat(32))).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // Port 9 (discard) has no NATS server: an answer about the interval, not about the
    // connection, shows that the options were checked first.
    for interval in ["5ms", "11s", "12s"] {
        let run = store.run(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--chain-key-file",
            key_file.to_str().unwrap(),
            "--nats",
            "nats://127.0.0.1:9",
            "--usage-interval",
            interval,
        ]);
        assert_eq!(run.code, 2, "{interval}: {run:?}");
        run.assert_one_error_line();
        assert!(
            run.stderr.contains("usage interval"),
            "{interval}: {}",
            run.stderr
        );
    }
    assert!(!store.path().exists(), "a refused start creates no store");
}

#[test]
fn create_with_an_external_id_and_meta_shows_them_and_list_filters_by_external_id() {
    let store = Store::new();
    let (key, json) = store.create_with(
        ALICE,
        "tenant bot",
        &[
            "--external-id",
            "tenant-7",
            "--meta",
            r#"{"plan": "pro", "seats": [1, 2]}"#,
        ],
    );
    assert_eq!(json["external_id"], "tenant-7");
    assert_eq!(json["meta"], serde_json::json!({"plan": "pro", "seats": [1, 2]}));
    store.create(ALICE, "other", &["r"], &[]);
    let run = store.run(&["list", "--external-id", "tenant-7", "--json"]);
    assert_eq!(run.code, 0, "{run:?}");
    let listed = run.json_lines();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], key.id.as_str());
    let shown = store.run(&["show", &key.id]);
    assert!(shown.stdout.contains("external id tenant-7"), "{}", shown.stdout);
    assert!(
        shown
            .stdout
            .contains(r#"meta        {"plan":"pro","seats":[1,2]}"#),
        "{}",
        shown.stdout
    );
}

#[test]
fn bad_external_ids_and_meta_exit_2_naming_the_field_and_write_nothing() {
    let store = Store::new();
    let made = store.create(ALICE, "bot", &["r"], &[]);
    let key_shaped = made.secret.as_str();
    let big = format!(r#"{{"a": "{}"}}"#, "x".repeat(5000));
    let in_meta = format!(r#"{{"note": "{key_shaped}"}}"#);
    for (flag, value, field) in [
        ("--meta", "[1, 2]", "meta"),
        ("--meta", "{not json", "meta"),
        ("--meta", big.as_str(), "meta"),
        ("--meta", in_meta.as_str(), "meta"),
        ("--external-id", key_shaped, "external_id"),
    ] {
        let run = store.act("create", ALICE, &["--name", "x", "--role", "r", flag, value]);
        assert_eq!(run.code, 2, "{flag} {value}: {run:?}");
        run.assert_one_error_line();
        assert!(run.stderr.contains(field), "{}", run.stderr);
        assert!(!run.stderr.contains(&key_shaped[4..]), "{}", run.stderr);
        let run = store.act("update", ALICE, &[&made.id, flag, value]);
        assert_eq!(run.code, 2, "{flag} {value}: {run:?}");
        assert!(!run.stderr.contains(&key_shaped[4..]), "{}", run.stderr);
    }
    let audit = store.run(&["audit", "--json"]).json_lines();
    assert_eq!(audit.len(), 1, "only the creation");
}

#[test]
fn update_changes_only_what_is_given_in_one_audit_entry_and_audit_at_shows_the_key_before() {
    let store = Store::new();
    let (key, _) = store.create_with(ALICE, "bot", &["--external-id", "t-1"]);
    let run = store.act(
        "update",
        ALICE,
        &[
            &key.id,
            "--name",
            "billing bot",
            "--add-role",
            "billing",
            "--meta",
            r#"{"tier": 2}"#,
            "--json",
        ],
    );
    assert_eq!(run.code, 0, "{run:?}");
    let json = run.json();
    assert_eq!(json["name"], "billing bot");
    assert_eq!(json["roles"], serde_json::json!(["r", "billing"]));
    assert_eq!(json["external_id"], "t-1", "unchanged");
    assert_eq!(json["meta"], serde_json::json!({"tier": 2}));
    let run = store.act("update", ALICE, &[&key.id, "--no-external-id", "--role", "r"]);
    assert_eq!(run.code, 0, "{run:?}");

    let trail = store.run(&["audit", "--kind", "updated", "--json"]).json_lines();
    assert_eq!(
        trail.len(),
        3,
        "the creation's external id, then two updates: {trail:?}"
    );
    assert_eq!(
        trail[1]["changes"],
        serde_json::json!({"name": "billing bot", "roles": ["r", "billing"], "meta": {"tier": 2}})
    );
    assert_eq!(
        trail[2]["changes"],
        serde_json::json!({"roles": ["r"], "external_id": null})
    );
    let human = store.run(&["audit", "--kind", "updated"]);
    assert!(human.stdout.contains("external id removed"), "{}", human.stdout);

    let before = store.run(&["audit", "--at", "2", "--json"]).json_lines();
    assert_eq!(before[0]["name"], "bot");
    assert_eq!(before[0]["external_id"], "t-1");
    assert_eq!(before[0]["meta"], Value::Null);
    let after = store.run(&["audit", "--at", "3", "--json"]).json_lines();
    assert_eq!(after[0]["name"], "billing bot");
}

#[test]
fn update_that_changes_nothing_exits_2_and_one_on_another_admins_key_exits_3() {
    let store = Store::new();
    let (key, _) = store.create_with(ALICE, "bot", &[]);
    let run = store.act("update", ALICE, &[&key.id, "--name", "bot"]);
    assert_eq!(run.code, 2, "{run:?}");
    run.assert_one_error_line();
    let run = store.act("update", BOB, &[&key.id, "--name", "mine"]);
    assert_eq!(run.code, 3, "{run:?}");
    let run = store.act("update", ALICE, &[&key.id, "--remove-role", "r"]);
    assert_eq!(run.code, 2, "a key keeps a role: {run:?}");
    let run = store.act("update", ALICE, &[&key.id]);
    assert_eq!(run.code, 2, "nothing to change is a usage error: {run:?}");
    let run = store.act("update", ALICE, &[&key.id, "--role", "x", "--add-role", "y"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(store.run(&["audit", "--json"]).json_lines().len(), 1);
}
