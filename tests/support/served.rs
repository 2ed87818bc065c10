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

/// Where a server's standard error goes when the run keeps every server's log
/// (`$KEYLEDGER_TEST_LOGS`, set by test.sh, which then reads every line for key-shaped
/// text): a new file there.
pub(crate) fn kept_log() -> Option<PathBuf> {
    static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = PathBuf::from(std::env::var_os("KEYLEDGER_TEST_LOGS").filter(|d| !d.is_empty())?);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("KEYLEDGER_TEST_LOGS={}: {e}", dir.display()));
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let test = std::env::args().next().unwrap_or_default();
    let test = Path::new(&test)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Some(dir.join(format!("{test}-{}-{n}.log", std::process::id())))
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
        let mut cmd = keyledger(db);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]).args(args);
        Self::spawn(cmd, db)
    }

    /// Runs `cmd` (a `keyledger ... serve` command line on the store at `db`, however it
    /// is started) and waits for its `listening on ADDR`.
    pub(crate) fn spawn(mut cmd: Command, db: &Path) -> Served {
        let stderr =
            kept_log().unwrap_or_else(|| db.with_extension(format!("serve-{}.stderr", std::process::id())));
        let mut child = cmd
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
