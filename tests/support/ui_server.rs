//! The admins' page's tests (tests/ui.rs), their server side: `keyledger serve` on a free
//! loopback port with a store of its own, bootstrapped with the command line as the README
//! says; HTTP calls the way a script or a proxy makes them; and child processes stopped
//! with a bounded wait, also when a test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

/// How long anything may take to appear: the machines are small and shared.
pub(crate) const WAIT: Duration = Duration::from_secs(30);
/// How long a process gets to exit after SIGTERM before it is killed.
pub(crate) const STOP: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Processes

/// A child process, stopped when dropped: SIGTERM, then SIGKILL after [`STOP`].
pub(crate) struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    pub(crate) fn spawn(name: &'static str, cmd: &mut Command) -> Process {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { name, child }
    }

    /// Whether the process has exited.
    pub(crate) fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Panics if the process has already exited: it was to keep running.
    pub(crate) fn assert_running(&mut self, log: &Path) {
        if let Some(status) = self.child.try_wait().unwrap() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{} exited early ({status}):\n{log}", self.name);
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        signal("-TERM", self.child.id());
        let deadline = Instant::now() + STOP;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} ignored SIGTERM for {STOP:?}: killing it", self.name);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a signal to one process, by its id.
pub(crate) fn signal(which: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([which, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A port nobody listens on right now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of an executable on `PATH`, if there is one.
pub(crate) fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

// ---------------------------------------------------------------------------------------
// HTTP, the way a script or a proxy calls the server

/// One answer, read whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// An HTTP/1.1 request over a new loopback connection, answered whole.
pub(crate) fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&Value>,
) -> Answer {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() {
        request.push_str("content-type: application/json\r\n");
    }
    request.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    Answer {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

pub(crate) fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

// ---------------------------------------------------------------------------------------
// The server

/// A key made with `create --json`.
pub(crate) struct Made {
    pub(crate) id: String,
    pub(crate) secret: String,
}

/// `keyledger serve` on a free loopback port, with a store of its own made beforehand.
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    log: PathBuf,
    _process: Process,
    /// The super admin's key: `root` made it for itself.
    pub(crate) root: Made,
    /// An admin key of `alice`, whitelisted for loopback.
    pub(crate) alice: Made,
    /// A key `bob` (another admin) made for his bot.
    pub(crate) bobs_bot: Made,
    /// A key of `alice`'s, disabled, whitelisted for 10.20.0.0/16 only.
    pub(crate) billing: Made,
    /// A key `alice` imported ("legacy crm", its secret [`LEGACY_SECRET`], outside
    /// keyledger's format), whitelisted for [`LEGACY_WHITELIST`], with an external id and
    /// metadata.
    pub(crate) legacy: Made,
    // Last: the store goes after the server has stopped.
    _dir: TempDir,
}

pub(crate) fn keyledger(db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keyledger"));
    cmd.env_remove("KEYLEDGER_DB")
        .env_remove("KEYLEDGER_CHAIN_KEY_FILE")
        .env_remove("KEYLEDGER_EXPECT_HEAD")
        .env_remove("KEYLEDGER_SERVER")
        .env_remove("KEYLEDGER_API_KEY")
        .arg("--db")
        .arg(db);
    cmd
}

/// `keyledger create --json` as `actor`; the bootstrap the README documents.
pub(crate) fn create(db: &Path, actor: (&str, &str), name: &str, roles: &[&str], ips: &[&str]) -> Made {
    let mut cmd = keyledger(db);
    cmd.args([
        "create",
        "--actor",
        actor.0,
        "--actor-role",
        actor.1,
        "--name",
        name,
        "--json",
    ]);
    for role in roles {
        cmd.args(["--role", role]);
    }
    for ip in ips {
        cmd.args(["--ip", ip]);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "create {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    Made {
        id: json["id"].as_str().unwrap().to_owned(),
        secret: json["key"].as_str().unwrap().to_owned(),
    }
}

/// `keyledger import-keys --json` as `actor`, of one key adopted with its secret as it is.
pub(crate) fn import(
    db: &Path,
    actor: (&str, &str),
    name: &str,
    roles: &[&str],
    secret: &str,
    ips: &[&str],
) -> Made {
    let file = db.with_extension("import.jsonl");
    let line = serde_json::json!({"name": name, "roles": roles, "key": secret, "ips": ips});
    std::fs::write(&file, format!("{line}\n")).unwrap();
    let out = keyledger(db)
        .args([
            "import-keys",
            "--actor",
            actor.0,
            "--actor-role",
            actor.1,
            "--json",
        ])
        .arg(&file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    assert!(
        out.status.success(),
        "import {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    Made {
        id: json["id"].as_str().unwrap().to_owned(),
        secret: secret.to_owned(),
    }
}

pub(crate) fn run_cli(db: &Path, args: &[&str]) {
    let out = keyledger(db).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The imported key's secret: adopted as it is, so it has no `klk_` hint.
pub(crate) const LEGACY_SECRET: &str = "legacy_secret_0123456789abcdef";
/// The imported key's whitelist: a long IPv6 range, and a short one that is not an address.
pub(crate) const LEGACY_WHITELIST: [&str; 2] = ["2001:db8:85a3:8d3:1319:8a2e:370:7300/120", "2001:db8::/32"];

pub(crate) const ROOT: (&str, &str) = ("root", "super-admin");
pub(crate) const ALICE: (&str, &str) = ("alice", "admin");
pub(crate) const BOB: (&str, &str) = ("bob", "admin");

/// `keyledger serve` on `db`, on a free loopback port, its output in `dir/serve.log`; once
/// it listens.
pub(crate) fn serve(db: &Path, dir: &Path) -> (Process, SocketAddr, PathBuf) {
    serve_with(db, dir, &[])
}

/// As [`serve`], with `args` after `serve --listen 127.0.0.1:0`.
pub(crate) fn serve_with(db: &Path, dir: &Path, args: &[&str]) -> (Process, SocketAddr, PathBuf) {
    let log = crate::served::kept_log().unwrap_or_else(|| dir.join("serve.log"));
    let log_file = std::fs::File::create(&log).unwrap();
    let mut process = Process::spawn(
        "keyledger serve",
        keyledger(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file),
    );
    // It prints the port it was given once it listens.
    let deadline = Instant::now() + WAIT;
    let addr: SocketAddr = loop {
        process.assert_running(&log);
        let printed = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(addr) = printed.lines().find_map(|l| l.strip_prefix("listening on ")) {
            break addr.trim().parse().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "keyledger serve printed no address within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    (process, addr, log)
}

impl Server {
    /// Bootstraps a store with the command line (a super admin, two admins and a few keys),
    /// then serves it.
    pub(crate) fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("keys.db");
        let root = create(&db, ROOT, "root console", &["super-admin"], &["127.0.0.1"]);
        let alice = create(&db, ALICE, "alice console", &["admin"], &["127.0.0.1", "::1"]);
        create(&db, BOB, "bob console", &["admin"], &["127.0.0.1"]);
        let bobs_bot = create(
            &db,
            BOB,
            "bob's bot",
            &["notifier"],
            &["127.0.0.1", "192.0.2.0/24"],
        );
        let billing = create(
            &db,
            ALICE,
            "billing sync",
            &["billing", "reports"],
            &["10.20.0.0/16"],
        );
        run_cli(
            &db,
            &[
                "disable",
                "--actor",
                ALICE.0,
                "--actor-role",
                ALICE.1,
                &billing.id,
            ],
        );
        let legacy = import(
            &db,
            ALICE,
            "legacy crm",
            &["crm"],
            LEGACY_SECRET,
            &LEGACY_WHITELIST,
        );
        let alice_acts = ["--actor", ALICE.0, "--actor-role", ALICE.1];
        run_cli(
            &db,
            &[
                &["update"][..],
                &alice_acts,
                &["--external-id", "acme-corp", &legacy.id],
            ]
            .concat(),
        );
        run_cli(
            &db,
            &[
                &["update"][..],
                &alice_acts,
                &["--meta", r#"{"plan": "pro"}"#, &legacy.id],
            ]
            .concat(),
        );
        create(&db, ROOT, "partner webhooks", &["webhooks"], &[]);

        let (process, addr, log) = serve(&db, dir.path());
        let health = http(addr, "GET", "/healthz", &[], None);
        assert_eq!(health.status, 200, "{health:?}");
        Server {
            addr,
            log,
            _process: process,
            root,
            alice,
            bobs_bot,
            billing,
            legacy,
            _dir: dir,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A call to the admin API with `key`, as any script could make it.
    pub(crate) fn api(&self, key: &str, method: &str, path: &str, body: Option<&Value>) -> Answer {
        http(self.addr, method, path, &[("x-api-key", key)], body)
    }

    /// Forward-auth, as nginx's `auth_request` asks it, from 127.0.0.1.
    pub(crate) fn auth(&self, key: &str) -> Answer {
        http(self.addr, "GET", "/auth", &[("x-api-key", key)], None)
    }

    pub(crate) fn keys(&self) -> Vec<Value> {
        let answer = self.api(&self.root.secret, "GET", "/v1/keys?all=true&unpaged=true", None);
        assert_eq!(answer.status, 200, "{answer:?}");
        answer.json().as_array().unwrap().clone()
    }
}

// The fields then drop in order: the server stops (gracefully: it closes the store)
// before its directory goes.
impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("keyledger serve's output:\n{log}");
        }
    }
}
