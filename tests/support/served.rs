//! `keyledger serve` spawned on a free loopback port with a store of its own: shared by
//! `tests/serve.rs` and `tests/cli_client.rs`, each of which uses part of it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary on `db`, with no store or server from the environment.
pub(crate) fn keyledger(db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    cmd.arg("--db")
        .arg(db)
        .env_remove("KEYLEDGER_DB")
        .env_remove("KEYLEDGER_SERVER")
        .env_remove("KEYLEDGER_API_KEY");
    cmd
}

/// Makes a super-admin key named `name` with the command line on the store at `db`, keyed
/// with the chain key in the file `chain_key` (the first key of a fleet's bootstrap store,
/// say), whitelisted for `ips` (none: any address); returns its secret.
pub(crate) fn super_admin_key(db: &Path, chain_key: &Path, name: &str, ips: &[&str]) -> String {
    let mut args = vec![
        "--chain-key-file",
        chain_key.to_str().unwrap(),
        "create",
        "--actor",
        "root",
        "--actor-role",
        "super-admin",
        "--name",
        name,
        "--role",
        "super-admin",
        "--json",
    ];
    for ip in ips {
        args.extend(["--ip", ip]);
    }
    let out = keyledger(db).args(&args).stdin(Stdio::null()).output().unwrap();
    assert!(out.status.success(), "keyledger {args:?}: {out:?}");
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    created["key"].as_str().unwrap().to_owned()
}

/// `keyledger serve` on a free loopback port; stopped (SIGTERM, then SIGKILL after a
/// bounded wait) on drop, also when a test fails.
pub(crate) struct Served {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// Standard output after `listening on ADDR`, a line at a time.
    pub(crate) lines: mpsc::Receiver<String>,
    stderr: PathBuf,
}

impl Served {
    pub(crate) fn start(db: &Path, args: &[&str]) -> Served {
        let stderr = db.with_extension(format!("serve-{}.stderr", std::process::id()));
        let mut child = keyledger(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let first = lines.recv_timeout(Duration::from_secs(30));
        let mut served = Served {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            lines,
            stderr,
        };
        let first = first.unwrap_or_else(|_| panic!("serve printed no address: {}", served.errors()));
        served.addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{first:?}"))
            .parse()
            .unwrap();
        served
    }

    pub(crate) fn errors(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (at most 20 s) for the process to exit.
    pub(crate) fn terminate(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Some(status);
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        if self.terminate().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
