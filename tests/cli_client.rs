//! The command line as a client of `keyledger serve` (`--server`): one scenario run on a
//! store opened by each command, and through a server of another store bootstrapped alike,
//! gives the same standard output, standard error and exit code at every step, once ids,
//! secrets and times (which differ between the two stores) are named by their order of
//! appearance. Then what only `--server` has: its usage errors, the admin key file, a
//! refused admin key and a server that cannot be reached.

#![allow(clippy::unwrap_used)]

#[path = "support/run.rs"]
mod run;

#[path = "support/served.rs"]
mod served;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use run::{Run, finish};
use serde_json::Value;
use tempfile::TempDir;

use served::{Served, keyledger};

/// Who acts: on the store, `--actor` and `--actor-role`; through the server, the admin key
/// that actor made for itself in the bootstrap (with its own role).
#[derive(Clone, Copy)]
enum Who {
    Root,
    Alice,
    Bob,
    /// Alice as a user: on the store `--actor-role user`; through the server, a key of
    /// alice's that holds neither admin role.
    AliceAsUser,
}

impl Who {
    fn actor(self) -> [&'static str; 4] {
        match self {
            Who::Root => ["--actor", "root", "--actor-role", "super-admin"],
            Who::Alice => ["--actor", "alice", "--actor-role", "admin"],
            Who::Bob => ["--actor", "bob", "--actor-role", "admin"],
            Who::AliceAsUser => ["--actor", "alice", "--actor-role", "user"],
        }
    }

    fn key(self) -> &'static str {
        match self {
            Who::Root => "root admin",
            Who::Alice => "alice admin",
            Who::Bob => "bob admin",
            Who::AliceAsUser => "plain bot",
        }
    }
}

/// The bootstrap, made alike on both stores with the command line: an admin key for each
/// actor (their own role, usable from loopback), and a key that is no admin's.
const BOOTSTRAP: [(Who, &str, &str); 4] = [
    (Who::Root, "root admin", "super-admin"),
    (Who::Alice, "alice admin", "admin"),
    (Who::Bob, "bob admin", "admin"),
    (Who::Alice, "plain bot", "bot"),
];

/// Ids, secrets and times named by their order of appearance: `<id 3>`, `<secret 1>`,
/// `<time>`; hints (`klk_…` and the secret's last four characters) as `<hint>`.
#[derive(Default)]
struct Names {
    seen: HashMap<String, String>,
    ids: usize,
    secrets: usize,
}

impl Names {
    fn name(&mut self, token: String, secret: bool) -> String {
        let (ids, secrets) = (&mut self.ids, &mut self.secrets);
        self.seen
            .entry(token)
            .or_insert_with(|| {
                let (kind, n) = if secret { ("secret", secrets) } else { ("id", ids) };
                *n += 1;
                format!("<{kind} {n}>")
            })
            .clone()
    }

    fn normalize(&mut self, text: &str) -> String {
        let chars: Vec<char> = text.chars().collect();
        let word = |c: char| c.is_ascii_alphanumeric();
        let mut out = String::new();
        let mut i = 0;
        while i < chars.len() {
            let at = |s: &str| chars[i..].iter().take(s.chars().count()).copied().eq(s.chars());
            if at("klk_…") {
                let end = (i + 5..chars.len())
                    .find(|&j| !word(chars[j]))
                    .unwrap_or(chars.len());
                out.push_str("<hint>");
                i = end;
            } else if at("klk_") {
                let end = (i + 4..chars.len())
                    .find(|&j| !word(chars[j]))
                    .unwrap_or(chars.len());
                out.push_str(&self.name(chars[i..end].iter().collect(), true));
                i = end;
            } else if let Some(end) = time_at(&chars, i) {
                out.push_str("<time>");
                i = end;
            } else if (i == 0 || !word(chars[i - 1]))
                && chars.len() >= i + 16
                && chars[i..i + 16]
                    .iter()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
                && chars.get(i + 16).is_none_or(|&c| !word(c))
            {
                out.push_str(&self.name(chars[i..i + 16].iter().collect(), false));
                i += 16;
            } else {
                out.push(chars[i]);
                i += 1;
            }
        }
        out
    }
}

/// Where a time starting at `i` ends: `YYYY-MM-DD`, `T` or a space, `HH:MM:SS`, then
/// perhaps a fraction and `Z`.
fn time_at(chars: &[char], i: usize) -> Option<usize> {
    let shape = "dddd-dd-dd_dd:dd:dd";
    let fits = shape.chars().enumerate().all(|(k, s)| {
        chars.get(i + k).is_some_and(|&c| match s {
            'd' => c.is_ascii_digit(),
            '_' => c == 'T' || c == ' ',
            s => c == s,
        })
    });
    if !fits {
        return None;
    }
    let mut end = i + shape.len();
    if chars.get(end) == Some(&'.') {
        end += 1;
        while chars.get(end).is_some_and(char::is_ascii_digit) {
            end += 1;
        }
    }
    if chars.get(end) == Some(&'Z') {
        end += 1;
    }
    Some(end)
}

/// One store, and how commands reach it: opened by each command, or through a server.
struct Side {
    db: PathBuf,
    served: Option<Served>,
    /// The bootstrap's secrets, by key name.
    secrets: HashMap<&'static str, String>,
    names: Names,
    /// Every run's output, to prove that no secret read was ever printed.
    printed: String,
}

impl Side {
    fn bootstrap(db: PathBuf) -> Side {
        let mut side = Side {
            db,
            served: None,
            secrets: HashMap::new(),
            names: Names::default(),
            printed: String::new(),
        };
        for (who, name, role) in BOOTSTRAP {
            let mut args = vec!["create"];
            args.extend(who.actor());
            args.extend(["--name", name, "--role", role, "--ip", "127.0.0.1", "--json"]);
            let run = finish(keyledger(&side.db).args(&args), None);
            assert_eq!(run.code, 0, "{run:?}");
            let key: Value = serde_json::from_str(&run.stdout).unwrap();
            // The bootstrap's ids get the first names, in the same order on both sides.
            side.names.name(key["id"].as_str().unwrap().to_owned(), false);
            side.secrets.insert(name, key["key"].as_str().unwrap().to_owned());
        }
        // Each admin key is used once, so that its `last_used_at` is a time on both sides
        // (through the server, every request uses one).
        for (who, name, _) in &BOOTSTRAP[..3] {
            let run = finish(
                keyledger(&side.db).args(["verify", "--ip", "127.0.0.1"]),
                Some(&format!("{}\n", side.secrets[name])),
            );
            assert_eq!(run.code, 0, "{:?}: {run:?}", who.key());
        }
        side
    }

    fn serve(&mut self) {
        self.served = Some(Served::start(&self.db, &[]));
    }

    fn url(&self) -> String {
        format!("http://{}", self.served.as_ref().unwrap().addr)
    }

    /// The command line for `args`, as `who` (or any admin, for a read).
    fn command(&self, who: Option<Who>, args: &[String]) -> Command {
        match &self.served {
            None => {
                let mut cmd = keyledger(&self.db);
                cmd.arg(&args[0]);
                if let Some(who) = who {
                    cmd.args(who.actor());
                }
                cmd.args(&args[1..]);
                cmd
            }
            Some(_) => {
                let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyledger"));
                cmd.env_remove("KEYLEDGER_DB")
                    .env("KEYLEDGER_SERVER", self.url())
                    .env(
                        "KEYLEDGER_API_KEY",
                        &self.secrets[who.unwrap_or(Who::Alice).key()],
                    )
                    .args(args);
                cmd
            }
        }
    }

    /// The id of the key named `name`, found with `list --all --json`.
    fn id(&self, name: &str) -> String {
        let run = finish(
            &mut self.command(None, &words(&["list", "--all", "--json"])),
            None,
        );
        assert_eq!(run.code, 0, "{run:?}");
        run.stdout
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .find(|k| k["name"] == name)
            .unwrap_or_else(|| panic!("no key named {name:?}"))["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Runs `args` (where `{NAME}` is the id of the key named NAME) and names what differs.
    fn run(&mut self, who: Option<Who>, args: &[&str], stdin: Option<&str>) -> Run {
        let args: Vec<String> = args
            .iter()
            .map(|a| match a.strip_prefix('{').and_then(|a| a.strip_suffix('}')) {
                Some(name) => self.id(name),
                None => (*a).to_owned(),
            })
            .collect();
        let run = finish(&mut self.command(who, &args), stdin);
        self.printed.push_str(&run.stdout);
        self.printed.push_str(&run.stderr);
        Run {
            code: run.code,
            stdout: self.names.normalize(&run.stdout),
            stderr: self.names.normalize(&run.stderr),
        }
    }
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// The two sides of the scenario.
struct Scenario {
    local: Side,
    remote: Side,
    _dir: TempDir,
}

impl Scenario {
    fn new() -> Scenario {
        let dir = TempDir::new().unwrap();
        let local = Side::bootstrap(dir.path().join("local"));
        let mut remote = Side::bootstrap(dir.path().join("remote"));
        remote.serve();
        Scenario {
            local,
            remote,
            _dir: dir,
        }
    }

    /// Runs a step both ways; asserts the same exit code and output; returns the run.
    fn step(&mut self, who: Option<Who>, args: &[&str], stdin: Option<&str>) -> Run {
        let here = self.local.run(who, args, stdin);
        let there = self.remote.run(who, args, stdin);
        assert_eq!(
            here, there,
            "{args:?}: on the store (left) and through the server (right)"
        );
        if here.code != 0 {
            let lines: Vec<&str> = here.stderr.lines().collect();
            assert!(
                lines.len() == 1 && lines[0].starts_with("error: "),
                "{args:?}: {here:?}"
            );
        }
        here
    }

    fn ok(&mut self, who: Option<Who>, args: &[&str]) -> Run {
        let run = self.step(who, args, None);
        assert_eq!(run.code, 0, "{args:?}: {run:?}");
        run
    }

    fn fails(&mut self, who: Option<Who>, args: &[&str], code: i32, says: &str) {
        let run = self.step(who, args, None);
        assert_eq!(run.code, code, "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
    }

    /// A JSON Lines step whose entries name the admin key they came through (`via`)
    /// through the server, and none on the store: the same once that is set aside.
    fn json_lines_via(&mut self, args: &[&str]) -> Vec<Value> {
        let here = self.local.run(None, args, None);
        let there = self.remote.run(None, args, None);
        assert_eq!((here.code, there.code), (0, 0), "{here:?} {there:?}");
        let parse = |run: &Run| -> Vec<Value> {
            run.stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let (mut here, mut there) = (parse(&here), parse(&there));
        assert_eq!(here.len(), there.len(), "{here:?} {there:?}");
        let admin_keys = ["<id 1>", "<id 2>", "<id 3>"];
        for (h, t) in here.iter_mut().zip(&mut there) {
            assert_eq!(h["via"], Value::Null, "the command line acts through no key: {h}");
            if !t["via"].is_null() {
                assert!(admin_keys.contains(&t["via"].as_str().unwrap()), "{t}");
                t["via"] = Value::Null;
            }
            assert_eq!(h, t);
        }
        here
    }
}

#[test]
fn a_scenario_gives_the_same_output_on_the_store_and_through_the_server() {
    let mut s = Scenario::new();
    let alice = Some(Who::Alice);

    // Creating: human and JSON, with an expiry either way; refusals by the rules and of
    // bad input.
    let created = s.ok(
        alice,
        &[
            "create",
            "--name",
            "bot one",
            "--role",
            "notifier",
            "--ip",
            "10.0.0.0/8",
            "--ip",
            "2001:db8::1",
        ],
    );
    assert!(created.stdout.contains("  key        <secret "), "{created:?}");
    let created = s.ok(
        alice,
        &[
            "create",
            "--name",
            "bot two",
            "--role",
            "reader",
            "--expires-in",
            "30d",
            "--json",
        ],
    );
    assert!(created.stdout.contains(r#""expires_at":"<time>""#), "{created:?}");
    s.ok(
        alice,
        &[
            "create",
            "--name",
            "bot three",
            "--role",
            "reader",
            "--expires-at",
            "2030-01-01T00:00:00Z",
        ],
    );
    s.fails(
        alice,
        &["create", "--name", "escalate", "--role", "super-admin"],
        3,
        "only a super admin may grant",
    );
    s.fails(alice, &["create", "--name", "", "--role", "r"], 2, "invalid name");

    // Reading.
    s.ok(None, &["list"]);
    s.ok(None, &["list", "--json"]);
    s.ok(None, &["list", "--all"]);
    s.ok(None, &["show", "{bot one}"]);
    s.ok(None, &["show", "{bot two}", "--json"]);

    // The whitelist, the last entry only when asked for.
    s.ok(alice, &["whitelist", "{bot one}", "192.0.2.1", "192.0.2.0/25"]);
    s.fails(
        alice,
        &["whitelist", "{bot one}", "192.0.2.1"],
        2,
        "is already whitelisted",
    );
    s.ok(alice, &["unwhitelist", "{bot one}", "192.0.2.1"]);
    s.ok(
        alice,
        &["create", "--name", "bot four", "--role", "r", "--ip", "192.0.2.7"],
    );
    s.fails(
        alice,
        &["unwhitelist", "{bot four}", "192.0.2.7"],
        2,
        "(pass --allow-any-address to mean it)",
    );
    s.ok(
        alice,
        &["unwhitelist", "{bot four}", "192.0.2.7", "--allow-any-address"],
    );

    // Rolling, disabling, enabling; changes that change nothing.
    let rolled = s.ok(alice, &["roll", "{bot one}", "--json"]);
    assert!(
        rolled.stdout.starts_with(r#"{"id":"<id 5>","key":"<secret "#),
        "{rolled:?}"
    );
    s.ok(alice, &["roll", "{bot two}", "--grace", "1h"]);
    s.ok(alice, &["roll", "{bot three}"]);
    s.ok(alice, &["disable", "{bot one}"]);
    s.fails(alice, &["disable", "{bot one}"], 2, "is already disabled");
    s.ok(alice, &["enable", "{bot one}"]);
    s.fails(alice, &["enable", "{bot one}"], 2, "is already enabled");

    // Another admin may not; the owner and a super admin may delete; deleted and unknown
    // keys are not found.
    s.fails(Some(Who::Bob), &["delete", "{bot one}"], 3, "permission denied");
    s.fails(
        Some(Who::Bob),
        &["roll", "{bot two}"],
        3,
        "may act only on the keys they created",
    );
    s.ok(alice, &["delete", "{bot one}"]);
    s.ok(Some(Who::Root), &["delete", "{bot three}"]);
    s.ok(None, &["show", "{bot one}"]);
    s.ok(None, &["show", "{bot three}", "--json"]);
    s.fails(alice, &["disable", "{bot one}"], 4, "has been deleted");
    s.fails(alice, &["roll", "{bot one}"], 4, "has been deleted");
    s.fails(None, &["show", "00000000000000ff"], 4, "not found");
    s.fails(alice, &["delete", "00000000000000ff"], 4, "not found");
    s.ok(None, &["list", "--all", "--json"]);

    // Adopting keys: one from standard input, and files of JSON Lines.
    let adopted = ["legacy_secret_0000000001", "legacy_secret_0000000002"];
    let run = s.step(
        alice,
        &[
            "import-key",
            "--name",
            "legacy bot",
            "--role",
            "bot",
            "--ip",
            "10.1.0.0/16",
        ],
        Some(&format!("{}\n", adopted[0])),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = s.step(
        alice,
        &[
            "import-key",
            "--name",
            "legacy json",
            "--role",
            "bot",
            "--expires-in",
            "2w",
            "--json",
        ],
        Some(adopted[1]),
    );
    assert_eq!(run.code, 0, "{run:?}");
    let run = s.step(
        alice,
        &["import-key", "--name", "again", "--role", "bot"],
        Some(adopted[0]),
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("is known to the store"), "{run:?}");
    let run = s.step(
        alice,
        &["import-key", "--name", "short", "--role", "bot"],
        Some("tiny"),
    );
    assert_eq!(run.code, 2, "{run:?}");

    let dir = TempDir::new().unwrap();
    let file = |name: &str, lines: &[String]| -> String {
        let path = dir.path().join(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path.to_str().unwrap().to_owned()
    };
    let line = |name: &str, secret: &str| {
        format!(r#"{{"name": "{name}", "roles": ["bot"], "ips": ["10.2.0.0/16"], "key": "{secret}"}}"#)
    };
    let sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let good = file(
        "good.jsonl",
        &[
            line("file one", "legacy_secret_0000000003"),
            format!(r#"{{"name": "file two", "roles": ["sync"], "sha256": "{sha}"}}"#),
        ],
    );
    s.ok(alice, &["import-keys", &good]);
    let more = file("more.jsonl", &[line("file three", "legacy_secret_0000000004")]);
    s.ok(alice, &["import-keys", &more, "--json"]);
    let bad = file(
        "bad.jsonl",
        &[
            line("file four", "legacy_secret_0000000005"),
            r#"{"name": "x", "roles": ["bot"], "colour": "blue", "key": "legacy_secret_0000000006"}"#
                .to_owned(),
        ],
    );
    s.fails(alice, &["import-keys", &bad], 2, "line 2: ");
    // Refused by the store (on the server's side of --server): the line is still named.
    let taken = file(
        "taken.jsonl",
        &[
            line("file five", "legacy_secret_0000000007"),
            line("file six", adopted[1]),
        ],
    );
    s.fails(
        alice,
        &["import-keys", &taken],
        2,
        "line 2: this secret is known to the store",
    );
    let escalate = file(
        "escalate.jsonl",
        &[r#"{"name": "up", "roles": ["super-admin"], "key": "legacy_secret_0000000008"}"#.to_owned()],
    );
    s.fails(alice, &["import-keys", &escalate], 3, "permission denied");
    s.fails(
        alice,
        &["import-keys", "/nonexistent/keys.jsonl"],
        2,
        "cannot read",
    );

    // The audit trail, its filters, the security trail, and time travel.
    s.ok(None, &["audit"]);
    let trail = s.json_lines_via(&["audit", "--json"]);
    assert!(trail.len() > 20, "{trail:?}");
    s.ok(None, &["audit", "--key", "{bot two}", "--kind", "rolled"]);
    s.ok(None, &["audit", "--actor", "bob"]);
    s.ok(
        None,
        &[
            "audit",
            "--since",
            "2000-01-01T00:00:00Z",
            "--until",
            "2100-01-01T00:00:00Z",
            "--kind",
            "created",
        ],
    );
    s.fails(None, &["audit", "--key", "00000000000000ff"], 4, "not found");
    s.ok(None, &["audit", "--refused"]);
    let refused = s.json_lines_via(&["audit", "--refused", "--json"]);
    assert!(refused.len() >= 3, "{refused:?}");
    s.ok(
        None,
        &["audit", "--refused", "--actor", "bob", "--key", "{bot one}"],
    );
    s.ok(None, &["audit", "--at", "6"]);
    s.ok(None, &["audit", "--at", "6", "--json"]);
    s.ok(None, &["audit", "--at", "5", "--key", "{bot one}"]);
    s.ok(None, &["audit", "--at", "0"]);
    s.fails(None, &["audit", "--at", "9999"], 2, "invalid");

    // Last, as it is refused before any command is made through the server (and so is
    // not in the security trail there): a key that is no admin's, and a user.
    s.fails(
        Some(Who::AliceAsUser),
        &["delete", "{bot two}"],
        3,
        "not an admin",
    );

    // No secret read (adopted, or an admin key) was ever printed, either way.
    for side in [&s.local, &s.remote] {
        for secret in adopted
            .iter()
            .map(|s| s.to_string())
            .chain(side.secrets.values().cloned())
        {
            assert!(!side.printed.contains(&secret), "{secret} was printed");
        }
    }
}

/// The binary with none of keyledger's variables from the environment.
fn bare(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    for var in [
        "KEYLEDGER_DB",
        "KEYLEDGER_CHAIN_KEY_FILE",
        "KEYLEDGER_EXPECT_HEAD",
        "KEYLEDGER_SERVER",
        "KEYLEDGER_API_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd.args(args);
    cmd
}

/// Asserts a usage error (exit 2) that says `says` in one `error:` line.
fn assert_usage(run: &Run, says: &str) {
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(
        run.stderr.starts_with("error: ") && run.stderr.contains(says),
        "{run:?}"
    );
}

#[test]
fn with_a_server_store_arguments_and_actors_are_refused_and_the_admin_key_is_never_shown() {
    let dir = TempDir::new().unwrap();
    let mut side = Side::bootstrap(dir.path().join("db"));
    side.serve();
    let url = side.url();
    let alice = side.secrets["alice admin"].clone();
    let mut runs = Vec::new();
    let mut run = |cmd: &mut Command| {
        let run = finish(cmd, None);
        runs.push(run.clone());
        run
    };

    let listed = run(bare(&["--server", &url, "list"]).env("KEYLEDGER_API_KEY", &alice));
    assert_eq!(listed.code, 0, "{listed:?}");
    assert!(listed.stdout.contains("alice admin"), "{listed:?}");

    // Who acts is the admin key's actor: --actor and --actor-role are refused.
    assert_usage(
        &run(bare(&[
            "--server",
            &url,
            "delete",
            "--actor",
            "alice",
            "--actor-role",
            "admin",
            "00000000000000aa",
        ])
        .env("KEYLEDGER_API_KEY", &alice)),
        "--actor and --actor-role are not taken with a server",
    );
    assert_usage(
        &run(&mut bare(&["--server", &url, "list"])),
        "set KEYLEDGER_API_KEY, or pass --api-key-file FILE",
    );

    // Arguments of a store opened here: refused on the command line, before or after the
    // command; ignored from the environment.
    for args in [
        vec!["--server", &url, "--db", "elsewhere", "list"],
        vec!["list", "--db", "elsewhere", "--server", &url],
    ] {
        assert_usage(
            &run(bare(&args).env("KEYLEDGER_API_KEY", &alice)),
            "--db is for a store opened here",
        );
    }
    assert_usage(
        &run(bare(&["--server", &url, "--require-whitelist", "list"]).env("KEYLEDGER_API_KEY", &alice)),
        "--require-whitelist is for a store opened here",
    );
    let from_environment = run(bare(&["--server", &url, "list"])
        .env("KEYLEDGER_API_KEY", &alice)
        .env("KEYLEDGER_DB", dir.path().join("elsewhere")));
    assert_eq!(from_environment, listed);

    // The commands that work on a store opened here: refused with --server given, run
    // here with KEYLEDGER_SERVER in the environment.
    assert_usage(
        &run(&mut bare(&["--server", &url, "check"])),
        "`check` works on a store opened here, never through --server",
    );
    let demo = run(bare(&["demo"]).env("KEYLEDGER_SERVER", &url));
    assert_eq!(demo.code, 0, "{demo:?}");
    assert_usage(
        &run(&mut bare(&["--api-key-file", "key", "list"])),
        "--api-key-file is the admin key of --server",
    );

    // The admin key from a file: never one another user may read.
    let file = dir.path().join("admin.key");
    std::fs::write(&file, format!("{alice}\n")).unwrap();
    let file_arg = file.to_str().unwrap();
    for mode in [0o644, 0o640, 0o604] {
        set_mode(&file, mode);
        assert_usage(
            &run(&mut bare(&["--server", &url, "--api-key-file", file_arg, "list"])),
            "other users may read it",
        );
    }
    set_mode(&file, 0o600);
    let from_file = run(bare(&["--server", &url, "--api-key-file", file_arg, "list"])
        .env("KEYLEDGER_API_KEY", "klk_not_this_one"));
    assert_eq!(from_file, listed, "the file wins over the environment");

    // A refused admin key: exit 3, and which refusal.
    let mut wrong = alice.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'a' { 'b' } else { 'a' });
    let refused = run(bare(&["--server", &url, "list"]).env("KEYLEDGER_API_KEY", &wrong));
    assert_eq!(refused.code, 3, "{refused:?}");
    assert_eq!(
        refused.stderr,
        format!("error: the server at {url} refused the admin key: unauthorized (malformed_checksum)\n")
    );

    // https is not spoken here; a server that is not there is a storage error (5).
    assert_usage(
        &run(bare(&["--server", &url.replace("http:", "https:"), "list"]).env("KEYLEDGER_API_KEY", &alice)),
        "https is not supported here",
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let nowhere = format!("http://127.0.0.1:{port}");
    let unreachable = run(bare(&["--server", &nowhere, "list"]).env("KEYLEDGER_API_KEY", &alice));
    assert_eq!(unreachable.code, 5, "{unreachable:?}");
    assert!(
        unreachable
            .stderr
            .starts_with(&format!("error: cannot reach the server at {nowhere}: ")),
        "{unreachable:?}"
    );

    for run in &runs {
        for secret in [&alice, &wrong] {
            assert!(
                !run.stdout.contains(secret.as_str()) && !run.stderr.contains(secret.as_str()),
                "{run:?} shows an admin key"
            );
        }
    }
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `GET /auth` with `key`, from loopback: the status code of the server's forward-auth.
fn auth_status(addr: std::net::SocketAddr, key: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /auth HTTP/1.1\r\nhost: keyledger.test\r\nx-api-key: {key}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("{answer:?}"))
}

#[test]
fn rate_limits_are_set_refused_and_shown_alike_on_the_store_and_through_the_server() {
    let mut s = Scenario::new();
    let alice = Some(Who::Alice);

    // Created with limits (sent as "rate_limits" in POST /v1/keys), and shown.
    s.ok(
        alice,
        &[
            "create",
            "--name",
            "metered",
            "--role",
            "bot",
            "--rate-limit",
            "100/1m",
            "--rate-limit",
            "20/1s",
        ],
    );
    let created = s.ok(
        alice,
        &[
            "create",
            "--name",
            "metered json",
            "--role",
            "bot",
            "--rate-limit",
            "2/1h",
            "--json",
        ],
    );
    assert!(
        created
            .stdout
            .contains(r#""rate_limits":[{"limit":2,"window":"1h"}]"#),
        "{created:?}"
    );
    s.ok(alice, &["create", "--name", "free", "--role", "bot"]);
    let shown = s.ok(None, &["show", "{metered}"]);
    assert!(
        shown.stdout.contains("\nrate limits 20/1s, 100/1m\n"),
        "{shown:?}"
    );
    s.ok(None, &["show", "{metered}", "--json"]);
    let listed = s.ok(None, &["list"]);
    assert!(listed.stdout.contains("RATE LIMITS"), "{listed:?}");
    s.ok(None, &["list", "--json"]);

    // Changed and removed with `limit` (PUT /v1/keys/{id}/limits).
    let set = s.ok(
        alice,
        &["limit", "{free}", "--rate-limit", "5/1d", "--rate-limit", "1/1s"],
    );
    assert_eq!(
        set.stdout,
        "set the rate limits of key <id 7> \"free\"; its rate limits are now: 1/1s, 5/1d\n"
    );
    let json = s.ok(alice, &["limit", "{free}", "--rate-limit", "10/1m", "--json"]);
    assert!(
        json.stdout
            .contains(r#""rate_limits":[{"limit":10,"window":"1m"}]"#),
        "{json:?}"
    );
    s.fails(
        alice,
        &["limit", "{free}", "--rate-limit", "10/60s"],
        2,
        "is already limited so",
    );
    let removed = s.ok(alice, &["limit", "{metered}", "--no-rate-limit"]);
    assert_eq!(
        removed.stdout,
        "removed the rate limits of key <id 5> \"metered\"; its rate limits are now: none\n"
    );
    s.fails(
        alice,
        &["limit", "{metered}", "--no-rate-limit"],
        2,
        "is already without rate limits",
    );

    // Refusals: another admin's key, bad limits, both forms, an unknown key.
    s.fails(
        Some(Who::Bob),
        &["limit", "{free}", "--rate-limit", "1/1d"],
        3,
        "may act only on the keys they created",
    );
    s.fails(
        alice,
        &["limit", "{free}", "--rate-limit", "0/1m"],
        2,
        "admits nothing",
    );
    s.fails(
        alice,
        &["create", "--name", "x", "--role", "bot", "--rate-limit", "5/1w"],
        2,
        "window unit",
    );
    let mut five = vec!["limit", "{free}"];
    for l in ["1/1s", "1/2s", "1/3s", "1/4s", "1/5s"] {
        five.extend(["--rate-limit", l]);
    }
    s.fails(alice, &five, 2, "at most 4");
    five[0] = "create";
    five[1] = "--name=x";
    five.extend(["--role", "bot"]);
    s.fails(alice, &five, 2, "at most 4");
    s.fails(
        alice,
        &["limit", "{free}", "--rate-limit", "1/1m", "--rate-limit", "2/60s"],
        2,
        "same window",
    );
    s.fails(
        alice,
        &["limit", "{free}", "--rate-limit", "1/1m", "--no-rate-limit"],
        2,
        "cannot be used with",
    );
    s.fails(
        alice,
        &["limit", "00000000000000ff", "--rate-limit", "1/1m"],
        4,
        "not found",
    );

    // Import lines with limits.
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("limited.jsonl");
    std::fs::write(
        &path,
        r#"{"name": "adopted", "roles": ["bot"], "key": "legacy_secret_0000000011", "rate_limits": [{"limit": 3, "window": "1m"}]}"#,
    )
    .unwrap();
    s.ok(alice, &["import-keys", path.to_str().unwrap()]);
    let adopted = s.ok(None, &["show", "{adopted}"]);
    assert!(adopted.stdout.contains("\nrate limits 3/1m\n"), "{adopted:?}");
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        r#"{"name": "bad", "roles": ["bot"], "key": "legacy_secret_0000000012", "rate_limits": [{"limit": 1, "window": "1m"}, {"limit": 1, "window": "60s"}]}"#,
    )
    .unwrap();
    s.fails(alice, &["import-keys", bad.to_str().unwrap()], 2, "line 1: ");

    // The trail: the changes, filtered by kind, and the refusal.
    let audit = s.ok(None, &["audit", "--kind", "limits_changed"]);
    assert!(audit.stdout.contains("rate limits: 1/1s, 5/1d"), "{audit:?}");
    assert!(audit.stdout.contains("rate limits removed"), "{audit:?}");
    let changes = s.json_lines_via(&["audit", "--kind", "limits_changed", "--json"]);
    assert_eq!(changes.len(), 3, "{changes:?}");
    let refused = s.json_lines_via(&["audit", "--refused", "--json"]);
    assert!(
        refused
            .iter()
            .any(|r| r["action"] == "limit" && r["actor"] == "bob"),
        "{refused:?}"
    );

    // The server's forward-auth holds a key made through it to its limits.
    let made = finish(
        &mut s.remote.command(
            alice,
            &words(&[
                "create",
                "--name",
                "burst",
                "--role",
                "bot",
                "--rate-limit",
                "2/1h",
                "--json",
            ]),
        ),
        None,
    );
    assert_eq!(made.code, 0, "{made:?}");
    let secret = serde_json::from_str::<Value>(&made.stdout).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let addr = s.remote.served.as_ref().unwrap().addr;
    let answers: Vec<u16> = (0..3).map(|_| auth_status(addr, &secret)).collect();
    assert_eq!(answers, [200, 200, 429]);
}

#[test]
fn usage_is_shown_alike_on_the_store_and_through_the_server() {
    let mut s = Scenario::new();
    let alice = Some(Who::Alice);
    let create = words(&[
        "create",
        "--name",
        "counted",
        "--role",
        "bot",
        "--ip",
        "127.0.0.1",
        "--json",
    ]);
    let secret = |side: &Side| {
        let made = finish(&mut side.command(alice, &create), None);
        assert_eq!(made.code, 0, "{made:?}");
        serde_json::from_str::<Value>(&made.stdout).unwrap()["key"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (here, there) = (secret(&s.local), secret(&s.remote));
    let db = s.local.db.clone();
    let verify_here = |expected: i32| {
        let run = finish(
            keyledger(&db).args(["verify", "--ip", "127.0.0.1"]),
            Some(&format!("{here}\n")),
        );
        assert_eq!(run.code, expected, "{run:?}");
    };
    let addr = s.remote.served.as_ref().unwrap().addr;
    verify_here(0);
    verify_here(0);
    assert_eq!([auth_status(addr, &there), auth_status(addr, &there)], [200, 200]);
    s.ok(alice, &["disable", "{counted}"]);
    verify_here(1);
    assert_ne!(auth_status(addr, &there), 200);

    let table = s.ok(None, &["usage", "{counted}"]);
    assert!(
        table.stdout.lines().last().unwrap().ends_with("disabled 1"),
        "{table:?}"
    );
    let json = s.ok(None, &["usage", "{counted}", "--granularity", "day", "--json"]);
    let json: Value = serde_json::from_str(&json.stdout).unwrap();
    let today = json["buckets"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(today["accepted"], 2, "{json}");
    assert_eq!(today["rejected"], serde_json::json!({"disabled": 1}));
    s.fails(
        None,
        &["usage", "{counted}", "--since", "2020-01-01T00:00:00Z"],
        2,
        "30 days",
    );
    s.fails(None, &["usage", "00000000000000ff"], 4, "not found");
}

#[test]
fn list_and_audit_print_every_key_through_the_servers_pages_and_the_first_n_with_limit() {
    let mut s = Scenario::new();
    // More keys than one page can hold (1,000), so the client follows a cursor.
    let lines: String = (0..1_050)
        .map(|i| {
            format!(
                "{{\"name\": \"paged {i:04}\", \"roles\": [\"bot\"], \"key\": \"cli_page_secret_{i:016}\"}}\n"
            )
        })
        .collect();
    let file = s._dir.path().join("paged.jsonl");
    std::fs::write(&file, lines).unwrap();
    s.ok(Some(Who::Root), &["import-keys", file.to_str().unwrap()]);
    let every = s.ok(None, &["list", "--json"]);
    assert_eq!(
        every.stdout.lines().count(),
        1_054,
        "the bootstrap's 4 and the 1,050"
    );
    let table = s.ok(None, &["list"]);
    assert!(table.stdout.contains("paged 1049"), "{}", table.stdout);
    let three = s.ok(None, &["list", "--limit", "3", "--json"]);
    assert_eq!(three.stdout.lines().count(), 3);
    let past_a_page = s.ok(None, &["list", "--all", "--limit", "1002", "--json"]);
    assert_eq!(past_a_page.stdout.lines().count(), 1_002);
    assert_eq!(s.json_lines_via(&["audit", "--limit", "2", "--json"]).len(), 2);
    assert_eq!(
        s.json_lines_via(&["audit", "--kind", "imported", "--json"]).len(),
        1_050
    );
    assert_eq!(
        s.ok(None, &["audit", "--at", "5", "--limit", "2", "--json"])
            .stdout
            .lines()
            .count(),
        2
    );
    s.ok(None, &["audit", "--refused", "--limit", "1"]);
}
