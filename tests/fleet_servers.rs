//! Which NATS servers a fleet host works with: one older than 2.10 answers JetStream's
//! requests in shapes the client cannot read, so a host refuses it at start, naming its
//! version and the oldest it supports, before asking it anything. Run against Debian's
//! nats-server 2.9.10, which `./test.sh` unpacks into `target/tools/nats-2.9` and names in
//! `$NATS_SERVER_OLD`.

#![allow(clippy::unwrap_used)]

#[path = "support/in_process.rs"]
mod in_process;
#[path = "support/nats.rs"]
mod nats;

use std::path::PathBuf;
use std::process::Command;

use keyledger::{ChainKey, Error, KeyStore};

use in_process::{CHAIN_KEY, options};
use nats::NatsServer;

fn old_server() -> PathBuf {
    std::env::var_os("NATS_SERVER_OLD")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            panic!(
                "$NATS_SERVER_OLD is not set: ./test.sh unpacks Debian's nats-server 2.9.10 into \
                 target/tools/nats-2.9 (apt-get download nats-server; dpkg -x) and sets it"
            )
        })
}

#[test]
fn a_server_older_than_2_10_is_refused_at_start_naming_its_version_and_the_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let server = NatsServer::start_program(old_server(), &dir.path().join("nats"), None);
    assert!(server.info().contains("\"version\":\"2.9."), "{}", server.info());

    let opened = KeyStore::builder()
        .chain_key(ChainKey::from_bytes(CHAIN_KEY))
        .fleet(options(&server.url(), "a"))
        .open(dir.path().join("a"));
    let Err(e) = opened else {
        panic!("a host joined a 2.9 server")
    };
    assert!(matches!(e, Error::InvalidInput { .. }), "{e:?}");
    let said = e.to_string();
    assert!(
        said.contains("NATS server") && said.contains("2.9.10") && said.contains("2.10.0"),
        "{said}"
    );

    // The same from the command line: a usage error (exit 2), its last line.
    let key_file = dir.path().join("chain.key");
    std::fs::write(&key_file, format!("{}\n", hex(&CHAIN_KEY))).unwrap();
    std::fs::set_permissions(&key_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keyledger"))
        .env_remove("KEYLEDGER_DB")
        .env_remove("KEYLEDGER_CHAIN_KEY_FILE")
        .env_remove("KEYLEDGER_NATS")
        .arg("--db")
        .arg(dir.path().join("b"))
        .args(["serve", "--listen", "127.0.0.1:0", "--chain-key-file"])
        .arg(&key_file)
        .args(["--nats", &server.url()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{stderr}");
    assert!(last.contains("2.9.10") && last.contains("2.10.0"), "{stderr}");
    assert!(
        !stderr.contains("async_nats"),
        "the NATS client's routine lines: {stderr}"
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
