//! `keyledger serve --config FILE` and `--print-config`, through the binary: a server that
//! takes its settings from the file, bad files refused at start (exit 2, the key and its
//! line named, no secret echoed, nothing opened), the printed settings read back the same
//! without the store being opened, and the shipped `docs/deploy/` example and unit.

#![allow(clippy::unwrap_used)]

#[path = "support/served.rs"]
mod served;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use served::{Served, keyledger};
use tempfile::TempDir;

/// The binary with nothing from the environment: no `--db`, which the file gives.
fn bare() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    for var in [
        "KEYLEDGER_DB",
        "KEYLEDGER_SERVER",
        "KEYLEDGER_API_KEY",
        "KEYLEDGER_NATS",
        "KEYLEDGER_CHAIN_KEY_FILE",
        "KEYLEDGER_EXPECT_HEAD",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.stdin(Stdio::null());
    cmd
}

/// Exit code, standard output, standard error.
fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A key for `ips` only, made with the command line on the store at `db`; its secret.
fn key_for(db: &Path, ips: &[&str]) -> String {
    let mut cmd = keyledger(db);
    cmd.args([
        "create",
        "--actor",
        "root",
        "--actor-role",
        "super-admin",
        "--name",
        "bot",
    ])
    .args(["--role", "super-admin", "--json"]);
    for ip in ips {
        cmd.args(["--ip", ip]);
    }
    let (code, out, err) = run(cmd.stdin(Stdio::null()));
    assert_eq!(code, 0, "{err}");
    serde_json::from_str::<serde_json::Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// One request on a connection of its own: the status.
fn status(addr: SocketAddr, path: &str, key: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nx-api-key: {key}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer[9..12].parse().unwrap()
}

#[test]
fn a_server_takes_its_address_its_store_and_its_settings_from_the_file() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("store");
    // A live key from the wrong address: 403 `ip_not_whitelisted`, unless refusals are
    // opaque, which only the file says.
    let key = key_for(&db, &["10.9.8.7"]);
    let config = write(
        dir.path(),
        "keyledger.toml",
        &format!(
            "db = {:?}\nlisten = \"127.0.0.1:0\"\nopaque-refusals = true\nlog-format = \"json\"\n",
            db.to_str().unwrap()
        ),
    );
    let stderr = dir.path().join("stderr");
    let mut child = bare()
        .args(["serve", "--config", &config])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{first:?}: {}", std::fs::read_to_string(&stderr).unwrap()))
        .parse()
        .unwrap();
    assert_eq!(status(addr, "/healthz", ""), 200);
    assert_eq!(status(addr, "/auth", &key), 401, "opaque-refusals from the file");
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    let log = std::fs::read_to_string(&stderr).unwrap();
    let lines: Vec<serde_json::Value> = log.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == format!("settings from {config}")),
        "{log}"
    );
    // The same store and key under a file that leaves refusals informative: 403.
    let plain = write(dir.path(), "plain.toml", "opaque-refusals = false\n");
    let served = Served::start(&db, &["--config", &plain]);
    assert_eq!(status(served.addr, "/auth", &key), 403, "{}", served.errors());
}

#[test]
fn bad_settings_files_are_refused_at_start_naming_the_key_and_line() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("never-made");
    let chain_key = "5f".repeat(32);
    for (text, said, secret) in [
        (
            "listen = \"127.0.0.1:0\"\nlisten-address = \"x\"\n",
            "line 2: unknown key `listen-address`",
            None,
        ),
        (
            "listen = \"127.0.0.1:0\"\nmax-connections = \"many\"\n",
            "line 2: `max-connections`: invalid value 'many'",
            None,
        ),
        (
            "listen = \"127.0.0.1:0\"\n\nopaque-refusals = 1\n",
            "line 3: `opaque-refusals` is a switch",
            None,
        ),
        (
            &format!("listen = \"127.0.0.1:0\"\nchain-key-file = \"{chain_key}\"\n"),
            "line 2: `chain-key-file` is the path of a file, but its value looks like a chain key",
            Some(chain_key.as_str()),
        ),
        (
            "listen = \"127.0.0.1:0\"\nnats = \"nats://api:hunter2@nats.internal:4222\"\n",
            "line 2: `nats` holds a URL with a user, password or token",
            Some("hunter2"),
        ),
    ] {
        let config = write(dir.path(), "bad.toml", text);
        let (code, out, err) = run(bare().args(["--db", db.to_str().unwrap(), "serve", "--config", &config]));
        assert_eq!(code, 2, "{text}: {err}");
        assert_eq!(out, "");
        assert!(
            err.starts_with(&format!("error: {config} {said}")),
            "{text}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        if let Some(secret) = secret {
            assert!(!err.contains(secret), "{err}");
        }
        assert!(!db.exists(), "a refused start made the store");
    }
}

/// The file decides who may sign in as an admin and where the store is: one that other
/// users may change is refused, whatever it says.
#[test]
fn a_settings_file_others_may_change_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("never-made");
    let config = write(dir.path(), "open.toml", "listen = \"127.0.0.1:0\"\n");
    for mode in [0o664, 0o646] {
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, _, err) = run(bare().args(["--db", db.to_str().unwrap(), "serve", "--config", &config]));
        assert_eq!(code, 2, "{mode:o}: {err}");
        assert!(err.contains("may be changed by other users"), "{err}");
        assert!(!db.exists());
    }
}

#[test]
fn print_config_reads_back_the_same_and_never_opens_the_store() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("store");
    key_for(&db, &[]);
    // The store is held by a running server: a command that opened it would exit 5.
    let served = Served::start(&db, &[]);
    let config = write(
        dir.path(),
        "keyledger.toml",
        "listen = \"127.0.0.1:9\"\ntrusted-proxy = [\"127.0.0.2\"]\nlog-auth-sample = 50\n\
         nats = \"nats://a.internal:4222\"\nchain-key-file = \"/etc/keyledger/chain.key\"\n",
    );
    let (code, printed, err) = run(bare().args([
        "--db",
        db.to_str().unwrap(),
        "serve",
        "--config",
        &config,
        "--read-timeout",
        "3",
        "--print-config",
    ]));
    assert_eq!(code, 0, "{err}");
    for line in [
        format!("db = {:?}", db.to_str().unwrap()),
        "listen = \"127.0.0.1:9\"".to_owned(),
        "read-timeout = 3".to_owned(),
        "log-auth-sample = 50".to_owned(),
        "nats = \"nats://a.internal:4222\"".to_owned(),
        "max-connections = 1024".to_owned(),
    ] {
        assert!(printed.lines().any(|l| l == line), "{line}:\n{printed}");
    }
    let again = write(dir.path(), "printed.toml", &printed);
    let (code, reprinted, err) = run(bare().args(["serve", "--config", &again, "--print-config"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(reprinted, printed);
    // Credentials from the environment are in force, and redacted.
    let (code, printed, _) = run(bare()
        .env("KEYLEDGER_NATS", "nats://api:hunter2@nats.internal:4222")
        .args(["serve", "--config", &config, "--print-config"]));
    assert_eq!(code, 0);
    assert!(
        printed.contains("nats = \"nats://api:REDACTED@nats.internal:4222\""),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"));
    drop(served);
}

#[test]
fn the_shipped_example_settings_are_accepted() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("store");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/deploy/keyledger.toml");
    let (code, printed, err) = run(bare().args([
        "serve",
        "--config",
        example,
        "--db",
        db.to_str().unwrap(),
        "--print-config",
    ]));
    assert_eq!(code, 0, "{err}");
    for line in [
        format!("db = {:?}", db.to_str().unwrap()),
        "chain-key-file = \"/etc/keyledger/chain.key\"".to_owned(),
        "listen = \"127.0.0.1:8080\"".to_owned(),
        "trusted-proxy = [\"127.0.0.2\"]".to_owned(),
    ] {
        assert!(printed.lines().any(|l| l == line), "{line}:\n{printed}");
    }
    assert!(!db.exists());
    // Without the override, the store is the one in the unit's StateDirectory.
    let (code, printed, _) = run(bare().args(["serve", "--config", example, "--print-config"]));
    assert_eq!(code, 0);
    assert!(
        printed.lines().any(|l| l == "db = \"/var/lib/keyledger/store\""),
        "{printed}"
    );
}

#[test]
fn the_shipped_unit_runs_serve_on_the_example_with_its_hardening() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/deploy/keyledger.service"
    ))
    .unwrap();
    let settings: Vec<(&str, &str)> = unit
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    let has = |key: &str, value: &str| settings.contains(&(key, value));
    assert!(has(
        "ExecStart",
        "/usr/local/bin/keyledger serve --config /etc/keyledger/keyledger.toml"
    ));
    // The example's store is in /var/lib/keyledger.
    assert!(has("StateDirectory", "keyledger"));
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("NoNewPrivileges", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("SystemCallFilter", "@system-service"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("Restart", "on-failure"),
    ] {
        assert!(has(key, value), "{key}={value}");
    }
    assert!(has("User", "keyledger") || has("DynamicUser", "yes"));
    // serve has no reload: SIGHUP would end it.
    assert!(!settings.iter().any(|(k, _)| *k == "ExecReload"));
}
