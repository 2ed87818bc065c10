//! The admins' page (`keyledger serve` at `/`) in a real browser: Debian's headless
//! Chromium, driven over WebDriver (chromedriver, on a free loopback port) by fantoccini,
//! against the real binary on a free loopback port with a store of its own, bootstrapped
//! with the command line as the README says. Every process is stopped with a bounded wait,
//! also when a test fails; a missing Chromium fails the test.

#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long anything may take to appear: the machines are small and shared.
const WAIT: Duration = Duration::from_secs(30);
/// How long a process gets to exit after SIGTERM before it is killed.
const STOP: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Processes

/// A child process, stopped when dropped: SIGTERM, then SIGKILL after [`STOP`].
struct Process {
    name: &'static str,
    child: Child,
}

impl Process {
    fn spawn(name: &'static str, cmd: &mut Command) -> Process {
        let child = cmd
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Process { name, child }
    }

    /// Panics if the process has already exited: it was to keep running.
    fn assert_running(&mut self, log: &Path) {
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
fn signal(which: &str, pid: u32) {
    let _ = Command::new("kill")
        .args([which, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The path of an executable on `PATH`, if there is one.
fn on_path(name: &str) -> Option<PathBuf> {
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
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// An HTTP/1.1 request over a new loopback connection, answered whole.
fn http(
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

fn dechunk(mut data: &[u8]) -> Vec<u8> {
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
struct Made {
    id: String,
    secret: String,
}

/// `keyledger serve` on a free loopback port, with a store of its own made beforehand.
struct Server {
    addr: SocketAddr,
    log: PathBuf,
    _process: Process,
    /// The super admin's key: `root` made it for itself.
    root: Made,
    /// An admin key of `alice`, whitelisted for loopback.
    alice: Made,
    /// A key `bob` (another admin) made for his bot.
    bobs_bot: Made,
    /// A key of `alice`'s, disabled, whitelisted for 10.20.0.0/16 only.
    billing: Made,
    // Last: the store goes after the server has stopped.
    _dir: TempDir,
}

fn keyledger(db: &Path) -> Command {
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
fn create(db: &Path, actor: (&str, &str), name: &str, roles: &[&str], ips: &[&str]) -> Made {
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

fn run_cli(db: &Path, args: &[&str]) {
    let out = keyledger(db).args(args).stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const ROOT: (&str, &str) = ("root", "super-admin");
const ALICE: (&str, &str) = ("alice", "admin");
const BOB: (&str, &str) = ("bob", "admin");

/// `keyledger serve` on `db`, on a free loopback port, its output in `dir/serve.log`; once
/// it listens.
fn serve(db: &Path, dir: &Path) -> (Process, SocketAddr, PathBuf) {
    let log = dir.join("serve.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut process = Process::spawn(
        "keyledger serve",
        keyledger(db)
            .args(["serve", "--listen", "127.0.0.1:0"])
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
    fn start() -> Server {
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
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A call to the admin API with `key`, as any script could make it.
    fn api(&self, key: &str, method: &str, path: &str, body: Option<&Value>) -> Answer {
        http(self.addr, method, path, &[("x-api-key", key)], body)
    }

    /// Forward-auth, as nginx's `auth_request` asks it, from 127.0.0.1.
    fn auth(&self, key: &str) -> Answer {
        http(self.addr, "GET", "/auth", &[("x-api-key", key)], None)
    }

    fn keys(&self) -> Vec<Value> {
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

// ---------------------------------------------------------------------------------------
// The browser

/// Headless Chromium under chromedriver, with a fresh profile.
struct Browser {
    client: Option<Client>,
    driver: Option<Process>,
    profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a Chromium session through it. Panics,
    /// failing the test, if Chromium or its driver is not installed.
    async fn start() -> Browser {
        let install =
            "install Debian's `chromium` and `chromium-driver` (./test.sh does it when they are missing)";
        let chromium = on_path("chromium").unwrap_or_else(|| panic!("Chromium is not installed: {install}"));
        let chromedriver =
            on_path("chromedriver").unwrap_or_else(|| panic!("chromedriver is not installed: {install}"));
        let profile = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = profile.path().join("chromedriver.log");
        let mut driver = Process::spawn(
            "chromedriver",
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .arg(format!("--log-path={}", log.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        );
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + WAIT;
        while TcpStream::connect(addr).is_err() {
            driver.assert_running(&log);
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let data_dir = profile.path().join("chromium");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", data_dir.display()),
                    "--window-size=1280,860",
                ],
            }),
        );
        let mut browser = Browser {
            client: None,
            driver: Some(driver),
            profile,
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://{addr}"))
            .await
            .unwrap_or_else(|e| {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = log
                    .lines()
                    .rev()
                    .take(40)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect::<Vec<_>>()
                    .join("\n");
                panic!("Chromium did not start under chromedriver: {e}\n{tail}")
            });
        browser.client = Some(client);
        browser
    }

    fn page(&self) -> Page<'_> {
        Page(self.client.as_ref().unwrap())
    }

    /// Ends the session (chromedriver closes Chromium), then stops chromedriver.
    async fn close(mut self) {
        if let Some(client) = self.client.take() {
            client.close().await.unwrap();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        drop(self.driver.take());
        // Chromium outlives a killed chromedriver: end the processes started with this
        // profile (and only those), by their ids.
        let marker = format!(
            "--user-data-dir={}",
            self.profile.path().join("chromium").display()
        );
        let deadline = Instant::now() + STOP;
        loop {
            let pids = processes_with_arg(&marker);
            if pids.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("Chromium processes {pids:?} outlived {STOP:?} after SIGKILL");
                return;
            }
            for pid in pids {
                signal("-KILL", pid);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The ids of the processes whose command line holds `arg`.
fn processes_with_arg(arg: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmdline| cmdline.split(|&b| b == 0).any(|a| a == arg.as_bytes()))
        })
        .collect()
}

/// What the tests do with the page, waiting for it where a person would.
#[derive(Clone, Copy)]
struct Page<'a>(&'a Client);

impl Page<'_> {
    async fn goto(self, url: &str) {
        self.0.goto(url).await.unwrap();
    }

    /// The element `css` once it is there.
    async fn find(self, css: &str) -> Element {
        self.0
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {WAIT:?}: {e}"))
    }

    /// Whether `css` is there right now.
    async fn has(self, css: &str) -> bool {
        !self.0.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    async fn click(self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn type_into(self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    async fn text(self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    async fn js(self, script: &str, args: Vec<Value>) -> Value {
        self.0
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until `script` (a function body) returns true.
    async fn until(self, what: &str, script: &str, args: Vec<Value>) {
        let deadline = Instant::now() + WAIT;
        while self.js(script, args.clone()).await != json!(true) {
            assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot in the target directory's `ui-screenshots/`; with
    /// `KEYLEDGER_SCREENSHOTS=1`, one `for_docs` also replaces its copy in `docs/`.
    async fn screenshot(self, name: &str, for_docs: bool) {
        let png = self.0.screenshot().await.unwrap();
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), &png).unwrap();
        if for_docs && std::env::var_os("KEYLEDGER_SCREENSHOTS").is_some() {
            std::fs::write(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(name),
                &png,
            )
            .unwrap();
        }
    }

    /// Signs in with `key` and waits for the keys table.
    async fn sign_in(self, key: &str) {
        self.type_into("#admin-key", key).await;
        self.click("#sign-in-form button[type=submit]").await;
        self.until(
            "the keys table after signing in",
            "return !document.getElementById('keys').hidden && document.querySelectorAll('#keys-table tbody tr').length > 0;",
            vec![],
        )
        .await;
    }

    async fn sign_out(self) {
        self.click("#sign-out").await;
        self.find("#sign-in:not([hidden])").await;
    }

    /// Where `secret` is in the page: in the markup (never), and which inputs hold it.
    async fn where_is(self, secret: &str) -> Value {
        self.js(
            "const s = arguments[0];
             return {
               markup: document.documentElement.outerHTML.includes(s),
               inputs: [...document.querySelectorAll('input, textarea')].filter(i => i.value.includes(s)).map(i => i.id),
               session: Object.keys(sessionStorage).filter(k => sessionStorage.getItem(k) === s),
               local: localStorage.length,
               cookie: document.cookie,
               url: location.href.includes(s),
             };",
            vec![json!(secret)],
        )
        .await
    }

    /// The row of key `id` in the keys table.
    fn row(id: &str) -> String {
        format!("#keys-table tr[data-key-id='{id}']")
    }
}

/// Runs a test's async body on a small runtime of its own.
fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}

// ---------------------------------------------------------------------------------------
// The scenarios of the issue

#[test]
fn page_is_served_with_a_strict_content_security_policy() {
    let server = Server::start();
    for path in ["/", "/ui/app.js", "/ui/app.css"] {
        let answer = http(server.addr, "GET", path, &[], None);
        assert_eq!(answer.status, 200, "{path}: {answer:?}");
        let csp = answer.header("content-security-policy").unwrap_or_default();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: CSP {csp:?} lacks {directive:?}");
        }
        assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(answer.header("referrer-policy"), Some("no-referrer"), "{path}");
        assert_eq!(answer.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(answer.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    let page = http(server.addr, "GET", "/", &[], None);
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(
        !page.body.contains("<script>"),
        "no inline script: the CSP forbids it"
    );
    assert!(
        !page.body.contains("http://") && !page.body.contains("https://"),
        "nothing from outside"
    );
}

#[test]
fn admin_generates_a_key_with_two_roles_and_two_ips_reads_it_once_and_it_verifies() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.find("#admin-key").await;
        page.screenshot("ui-sign-in.png", false).await;
        page.sign_in(&server.alice.secret).await;
        assert_eq!(page.text("#whoami").await, "Signed in as alice (admin)");

        // The admin key is in this tab's sessionStorage, and nowhere else.
        let admin = page.where_is(&server.alice.secret).await;
        assert_eq!(admin["markup"], json!(false), "{admin}");
        assert_eq!(admin["inputs"], json!([]), "{admin}");
        assert_eq!(admin["session"], json!(["keyledger.admin-key"]), "{admin}");
        assert_eq!(admin["local"], json!(0), "{admin}");
        assert_eq!(admin["cookie"], json!(""), "{admin}");
        assert_eq!(admin["url"], json!(false), "{admin}");

        // Generate new API key: a name, an existing role and a new one, two IPs, Save.
        page.click("#generate").await;
        page.type_into("#new-name", "notifications bot").await;
        page.click("#roles-summary").await;
        page.click("#role-options input[value='notifier']").await;
        page.type_into("#new-role", "reports").await;
        page.click("#add-role").await;
        assert_eq!(
            page.text("#roles-summary").await,
            "notifier, reports (2 selected)"
        );
        page.click("#add-ip").await;
        page.type_into("#ip-rows li:nth-child(1) input", "127.0.0.1")
            .await;
        page.click("#add-ip").await;
        page.type_into("#ip-rows li:nth-child(2) input", "10.20.0.0/16")
            .await;
        assert_eq!(
            page.js(
                "return document.querySelectorAll('#ip-rows [aria-invalid]').length",
                vec![]
            )
            .await,
            json!(0)
        );
        page.screenshot("ui-generate.png", false).await;
        page.click("#save").await;

        // The key, once, in the dialog.
        page.find("#secret-dialog[open]").await;
        let secret = page
            .find("#secret-value")
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap();
        assert!(secret.starts_with("klk_") && secret.len() == 40, "{secret:?}");
        assert!(
            page.text("#secret-warning")
                .await
                .contains("you will not see it again")
        );
        let shown = page.where_is(&secret).await;
        assert_eq!(
            shown["inputs"],
            json!(["secret-value"]),
            "only the one-time dialog holds it: {shown}"
        );
        assert_eq!(shown["markup"], json!(false), "{shown}");
        assert_eq!(shown["session"], json!([]), "{shown}");
        page.click("#copy-secret").await;
        page.until(
            "the copy answer",
            "return document.getElementById('copy-status').textContent !== ''",
            vec![],
        )
        .await;
        page.screenshot("ui-new-key.png", true).await;

        // Closing the dialog forgets it.
        page.click("#secret-done").await;
        page.until(
            "the dialog to close",
            "return !document.getElementById('secret-dialog').open",
            vec![],
        )
        .await;
        let after = page.where_is(&secret).await;
        assert_eq!(after["inputs"], json!([]), "{after}");
        assert_eq!(after["markup"], json!(false), "{after}");

        // The server has it as the form said, and it verifies from a whitelisted address.
        let created = server
            .keys()
            .into_iter()
            .find(|k| k["name"] == "notifications bot")
            .expect("the new key is listed");
        assert_eq!(created["roles"], json!(["notifier", "reports"]));
        assert_eq!(created["whitelist"], json!(["127.0.0.1/32", "10.20.0.0/16"]));
        assert_eq!(created["created_by"], json!("alice"));
        let auth = server.auth(&secret);
        assert_eq!(auth.status, 200, "{auth:?}");
        assert_eq!(auth.header("x-keyledger-key-id"), created["id"].as_str());
        assert_eq!(auth.header("x-keyledger-roles"), Some("notifier,reports"));

        // The table shows it, with its hint and never its secret.
        let row = Page::row(created["id"].as_str().unwrap());
        let text = page.text(&row).await;
        assert!(
            text.contains("notifications bot") && text.contains(created["hint"].as_str().unwrap()),
            "{text}"
        );
        assert!(!text.contains(&secret));
        page.js("document.activeElement.blur()", vec![]).await;
        page.screenshot("ui-keys.png", true).await;

        // On a phone's width, rows become cards and nothing is wider than the screen.
        page.0.set_window_size(390, 844).await.unwrap();
        page.until(
            "the phone layout to fit the screen",
            "return document.documentElement.scrollWidth <= window.innerWidth
                && getComputedStyle(document.querySelector('#keys-table thead')).display === 'none'",
            vec![],
        )
        .await;
        page.screenshot("ui-phone.png", false).await;

        // Sign out forgets the admin key.
        page.sign_out().await;
        let gone = page.where_is(&server.alice.secret).await;
        assert_eq!(gone["session"], json!([]), "{gone}");
        browser.close().await;
    });
}

#[test]
fn admin_has_no_delete_on_another_admins_key_and_a_super_admin_deletes_it_at_once() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;

        // Alice may act on her own keys, not on Bob's.
        let bobs = Page::row(&server.bobs_bot.id);
        let alices = Page::row(&server.alice.id);
        page.find(&bobs).await;
        assert!(
            !page.has(&format!("{bobs} button[data-action='delete']")).await,
            "Bob's key offers Alice a delete"
        );
        // Reading a key's usage is open to every admin, as reading the key is.
        assert!(
            !page
                .has(&format!("{bobs} button:not([data-action='usage'])"))
                .await,
            "Bob's key offers Alice an action"
        );
        assert!(page.has(&format!("{bobs} button[data-action='usage']")).await);
        assert!(page.has(&format!("{alices} button[data-action='delete']")).await);

        // The server refuses her a forged call all the same.
        let forged = server.api(
            &server.alice.secret,
            "DELETE",
            &format!("/v1/keys/{}", server.bobs_bot.id),
            None,
        );
        assert_eq!(forged.status, 403, "{forged:?}");
        assert_eq!(forged.json()["error"], json!("permission_denied"), "{forged:?}");
        assert_eq!(server.auth(&server.bobs_bot.secret).status, 200);

        // The super admin deletes it, after a confirmation, and it stops verifying at once.
        page.sign_out().await;
        page.sign_in(&server.root.secret).await;
        assert_eq!(page.text("#whoami").await, "Signed in as root (super-admin)");
        page.click(&format!("{bobs} button[data-action='delete']")).await;
        page.find("#confirm-dialog[open]").await;
        assert!(page.text("#confirm-title").await.contains("bob's bot"));
        page.click("#confirm-ok").await;
        page.until(
            "the deleted key to leave the live keys",
            "return !document.querySelector(arguments[0]) && !document.getElementById('confirm-dialog').open",
            vec![json!(bobs)],
        )
        .await;
        let auth = server.auth(&server.bobs_bot.secret);
        assert_eq!(auth.status, 401, "{auth:?}");

        // With every status shown, it is there, deleted by root.
        page.find("#key-status")
            .await
            .select_by_value("all")
            .await
            .unwrap();
        let row = page.text(&bobs).await;
        assert!(row.contains("deleted") && row.contains("by root"), "{row}");

        // The audit trail says who deleted what; the refused attempts show Alice's try.
        page.click("#nav-audit").await;
        page.find("#audit:not([hidden])").await;
        page.find("#audit-kind")
            .await
            .select_by_value("deleted")
            .await
            .unwrap();
        page.until(
            "the deletion in the audit trail",
            "const rows = document.querySelectorAll('#audit-table tbody tr');
             return rows.length === 1 && rows[0].dataset.kind === 'deleted';",
            vec![],
        )
        .await;
        page.screenshot("ui-audit.png", false).await;
        let entry = page.text("#audit-table tbody tr").await;
        assert!(
            entry.contains("root") && entry.contains("bob's bot") && entry.contains(&server.bobs_bot.id),
            "{entry}"
        );
        page.click("#audit-refused").await;
        page.until(
            "the refused attempt",
            "return document.querySelectorAll('#refused-table tbody tr').length === 1",
            vec![],
        )
        .await;
        let refused = page.text("#refused-table tbody tr").await;
        assert!(
            refused.contains("alice") && refused.contains("delete") && refused.contains(&server.bobs_bot.id),
            "{refused}"
        );
        browser.close().await;
    });
}

/// The super admin makes an admin key for carol in the form; signed in with it, the page
/// is carol's. Alice, an admin, may not name someone else, and is told so at the field.
#[test]
fn an_admin_key_made_for_a_person_signs_in_as_that_person() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.root.secret).await;
        page.click("#generate").await;
        page.type_into("#new-name", "carol console").await;
        page.type_into("#new-role", "admin").await;
        page.click("#add-role").await;
        page.type_into("#new-person", "carol").await;
        page.click("#save").await;
        page.find("#secret-dialog[open]").await;
        let secret = page
            .find("#secret-value")
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap();
        page.click("#secret-done").await;
        let me = server.api(&secret, "GET", "/v1/whoami", None).json();
        assert_eq!(
            (me["actor"].as_str(), me["actor_role"].as_str()),
            (Some("carol"), Some("admin"))
        );
        page.sign_out().await;
        page.sign_in(&secret).await;
        assert_eq!(page.text("#whoami").await, "Signed in as carol (admin)");

        page.sign_out().await;
        page.sign_in(&server.alice.secret).await;
        page.click("#generate").await;
        page.type_into("#new-name", "for dave").await;
        page.type_into("#new-role", "admin").await;
        page.click("#add-role").await;
        page.type_into("#new-person", "dave").await;
        page.click("#save").await;
        page.until(
            "the refusal next to the person field",
            "return document.getElementById('new-person-error').textContent.includes('dave')",
            vec![],
        )
        .await;
        browser.close().await;
    });
}

#[test]
fn bad_ip_is_flagged_as_typed_and_refused_with_the_servers_reason() {
    run(async {
        let server = Server::start();
        let before = server.keys().len();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;
        page.click("#generate").await;
        page.type_into("#new-name", "bad address").await;
        page.click("#roles-summary").await;
        page.click("#role-options input[value='notifier']").await;
        page.click("#add-ip").await;
        let ip = "#ip-rows li:nth-child(1) input";
        let error = "#ip-rows li:nth-child(1) .error";

        // As it is typed: not an address, then host bits set.
        page.type_into(ip, "10.0.0.256").await;
        assert_eq!(
            page.text(error).await,
            "\"10.0.0.256\" is not an IP address or CIDR range"
        );
        assert_eq!(
            page.find(ip).await.attr("aria-invalid").await.unwrap().as_deref(),
            Some("true")
        );
        page.type_into(ip, "10.1.2.3/8").await;
        assert_eq!(
            page.text(error).await,
            "10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"
        );
        assert_eq!(
            page.find(error)
                .await
                .attr("data-source")
                .await
                .unwrap()
                .as_deref(),
            Some("client")
        );

        // Save: the server refuses, and its reason stands next to the entry.
        page.click("#save").await;
        page.until(
            "the server's reason",
            "return document.querySelector(arguments[0]).dataset.source === 'server'",
            vec![json!(error)],
        )
        .await;
        let reason = page.text(error).await;
        assert!(
            reason.contains("10.1.2.3/8 has host bits set; did you mean 10.0.0.0/8?"),
            "{reason}"
        );
        assert!(
            page.has("#generate-dialog[open]").await,
            "the form stays open to be fixed"
        );
        page.screenshot("ui-bad-ip.png", false).await;
        assert_eq!(server.keys().len(), before, "nothing was created");

        // The check as typed follows the server's rules: the same verdict, in the same words.
        let verdicts = page
            .js(
                "return arguments[0].map(s => checkNet(s))",
                vec![json!(WHITELIST_CASES)],
            )
            .await;
        for (case, verdict) in WHITELIST_CASES.iter().zip(verdicts.as_array().unwrap()) {
            match keyledger::parse_net(case.trim()) {
                Ok(net) => assert_eq!(verdict, &json!({"net": net.to_string()}), "{case:?}"),
                Err(keyledger::Error::InvalidInput { reason, .. }) => {
                    assert_eq!(verdict, &json!({"error": reason}), "{case:?}")
                }
                Err(e) => panic!("{case:?}: {e}"),
            }
        }

        // Fixed, it saves.
        page.type_into(ip, "10.0.0.0/8").await;
        page.click("#save").await;
        page.find("#secret-dialog[open]").await;
        assert_eq!(server.keys().len(), before + 1);
        browser.close().await;
    });
}

#[test]
fn admin_enables_disables_rewhitelists_and_rolls_a_key_of_their_own() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        let id = server.billing.id.clone();
        let row = Page::row(&id);
        let status = |server: &Server| {
            let answer = server.api(&server.alice.secret, "GET", &format!("/v1/keys/{id}"), None);
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.json()
        };
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;

        // Enable at once; disable after a confirmation.
        page.click(&format!("{row} button[data-action='enable']")).await;
        page.find(&format!("{row} button[data-action='disable']")).await;
        assert_eq!(status(&server)["status"], json!("active"));
        page.click(&format!("{row} button[data-action='disable']")).await;
        page.find("#confirm-dialog[open]").await;
        page.click("#confirm-ok").await;
        page.find(&format!("{row} button[data-action='enable']")).await;
        assert_eq!(status(&server)["status"], json!("disabled"));
        page.click(&format!("{row} button[data-action='enable']")).await;
        page.find(&format!("{row} button[data-action='disable']")).await;

        // The whitelist: add, a bad entry refused with the server's reason, remove.
        page.click(&format!("{row} button[data-action='whitelist']"))
            .await;
        page.find("#whitelist-dialog[open]").await;
        page.type_into("#whitelist-add", "10.30.0.0/16").await;
        page.click("#whitelist-add-button").await;
        page.find("#whitelist-entries button[data-net='10.30.0.0/16']")
            .await;
        assert_eq!(
            status(&server)["whitelist"],
            json!(["10.20.0.0/16", "10.30.0.0/16"])
        );
        page.type_into("#whitelist-add", "10.30.0.1/16").await;
        assert_eq!(
            page.text("#whitelist-add-error").await,
            "10.30.0.1/16 has host bits set; did you mean 10.30.0.0/16?"
        );
        page.click("#whitelist-add-button").await;
        page.until(
            "the server's reason for the bad entry",
            "return document.getElementById('whitelist-add-error').dataset.source === 'server'",
            vec![],
        )
        .await;
        assert!(
            page.text("#whitelist-add-error")
                .await
                .contains("has host bits set")
        );
        page.click("#whitelist-entries button[data-net='10.20.0.0/16']")
            .await;
        page.until(
            "the removed entry to go",
            "return !document.querySelector(\"#whitelist-entries button[data-net='10.20.0.0/16']\")",
            vec![],
        )
        .await;
        assert_eq!(status(&server)["whitelist"], json!(["10.30.0.0/16"]));

        // The last entry goes only when the admin says any address may use the key.
        page.click("#whitelist-entries button[data-net='10.30.0.0/16']")
            .await;
        page.until(
            "the server's refusal",
            "return document.getElementById('whitelist-error').textContent !== ''",
            vec![],
        )
        .await;
        assert_eq!(status(&server)["whitelist"], json!(["10.30.0.0/16"]));
        page.screenshot("ui-whitelist.png", false).await;
        page.click("#allow-any").await;
        page.click("#whitelist-entries button[data-net='10.30.0.0/16']")
            .await;
        page.find("#whitelist-any:not([hidden])").await;
        assert_eq!(status(&server)["whitelist"], json!([]));
        page.click("#whitelist-dialog button.cancel").await;

        // Roll with an hour of grace: the new secret once, and both secrets verify.
        page.click(&format!("{row} button[data-action='roll']")).await;
        page.find("#confirm-dialog[open]").await;
        page.find("#grace").await.select_by_value("1h").await.unwrap();
        page.click("#confirm-ok").await;
        page.find("#secret-dialog[open]").await;
        let rolled = page
            .find("#secret-value")
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(rolled, server.billing.secret);
        assert!(
            page.text("#secret-for")
                .await
                .contains("The previous one works until")
        );
        page.click("#secret-done").await;
        assert_eq!(server.auth(&rolled).status, 200);
        assert_eq!(
            server.auth(&server.billing.secret).status,
            200,
            "within the grace"
        );
        let trail = server.api(
            &server.alice.secret,
            "GET",
            &format!("/v1/audit?key={id}&unpaged=true"),
            None,
        );
        let kinds: Vec<String> = trail
            .body
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "created",
                "disabled",
                "enabled",
                "disabled",
                "enabled",
                "whitelisted",
                "unwhitelisted",
                "unwhitelisted",
                "rolled"
            ]
        );
        browser.close().await;
    });
}

/// Whitelist entries good and bad: both families, prefixes, host bits, leading zeros,
/// IPv4-mapped and embedded IPv4, compression, zones, and garbage.
const WHITELIST_CASES: &[&str] = &[
    "10.0.0.0/8",
    "10.1.2.3/8",
    "10.0.0.1",
    "010.0.0.1",
    "010.0.0.0/8",
    "10.0.0.0/08",
    "10.0.0.0/033",
    "10.0.0.0/33",
    "10.0.0.256",
    "1.2.3",
    "1.2.3.4.5",
    "::1",
    "::",
    "::/0",
    "2001:db8::1",
    "2001:db8::/32",
    "2001:db8::1/32",
    "2001:DB8::/32",
    "::ffff:10.0.0.1",
    "::ffff:10.0.0.0/104",
    "::ffff:10.0.0.1/104",
    "::ffff:10.0.0.0/95",
    "::ffff:0.0.0.0/96",
    "1:2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7::",
    "::2:3:4:5:6:7:8",
    "1::2::3",
    "1:2:3:4:5:6:1.2.3.4",
    "1:2:3:4:5:6:01.2.3.4",
    "1:2:3:4:5:6:01.2.3.4/128",
    "::1.2.3.4",
    "1.2.3.4::",
    "fe80::1%eth0",
    " 10.0.0.1",
    "10.0.0.1/32",
    "2001:db8:0:0:1:0:0:1",
    "2001:0:0:1:0:0:0:1",
    "0:0:0:0:0:0:0:0/0",
    "12345::",
    "::12345",
    "abcd::ef01/128",
    "10.0.0.0/-1",
    "10.0.0.0/",
    "/8",
    "1.2.3.4/8x",
    "0.0.0.0/0",
    "255.255.255.255",
    "192.168.1.128/25",
    "192.168.1.129/25",
    "2001:db8::8000/113",
    "2001:db8::8001/113",
    ":1::",
    "1:::2",
    "::ffff:1.2.3.4/127",
];

#[test]
fn a_keys_usage_chart_shows_accepted_and_rejected_requests_and_its_limit_scaled_to_the_bucket() {
    run(async {
        let server = Server::start();
        let created = server.api(
            &server.alice.secret,
            "POST",
            "/v1/keys",
            Some(&json!({"name": "metered", "roles": ["bot"], "rate_limits": [
                {"limit": 2, "window": "1h"}, {"limit": 100, "window": "1m"}
            ]})),
        );
        assert_eq!(created.status, 201, "{created:?}");
        let id = created.json()["id"].as_str().unwrap().to_owned();
        let secret = created.json()["key"].as_str().unwrap().to_owned();
        let statuses: Vec<u16> = (0..3).map(|_| server.auth(&secret).status).collect();
        assert_eq!(statuses, [200, 200, 429]);

        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;
        page.click(&format!("{} button[data-action='usage']", Page::row(&id)))
            .await;
        page.find("#usage-dialog[open]").await;
        page.find("#usage-chart svg .bucket").await;
        let chart = |_: ()| {
            page.js(
                "const buckets = [...document.querySelectorAll('#usage-chart .bucket')];
                 const last = buckets[buckets.length - 1];
                 const accepted = last.querySelector('.bar-accepted');
                 const rejected = last.querySelector('.bar-rejected');
                 const limit = document.querySelector('#usage-chart .limit-line');
                 return {
                   buckets: buckets.length,
                   accepted: Number(accepted.dataset.count),
                   rejected: Number(rejected.dataset.count),
                   accepted_top: Number(accepted.getAttribute('y')),
                   rejected_height: Number(rejected.getAttribute('height')),
                   limit: limit && Number(limit.dataset.perBucket),
                   limit_y: limit && Number(limit.getAttribute('y1')),
                   legend: document.getElementById('usage-limit-text').textContent,
                 };",
                vec![],
            )
        };
        let hours = chart(()).await;
        assert_eq!(hours["buckets"], 24, "{hours}");
        assert_eq!(
            (hours["accepted"].clone(), hours["rejected"].clone()),
            (json!(2), json!(1)),
            "{hours}"
        );
        assert!(hours["rejected_height"].as_f64().unwrap() > 0.0, "{hours}");
        // 2/1h is the tightest (100/1m allows 6000 an hour): 2 a bucket, level with the
        // top of the two accepted requests.
        assert_eq!(hours["limit"], 2, "{hours}");
        assert!(
            (hours["limit_y"].as_f64().unwrap() - hours["accepted_top"].as_f64().unwrap()).abs() < 0.01,
            "{hours}"
        );
        assert_eq!(hours["legend"], "rate limit 2/1h: 2 per hour");
        page.screenshot("ui-usage.png", false).await;

        // Per day: 30 bars, the limit 48 a day.
        page.js(
            "const s = document.getElementById('usage-granularity'); s.value = 'day'; s.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
        page.until(
            "the daily chart",
            "return document.querySelectorAll('#usage-chart .bucket').length === 30",
            vec![],
        )
        .await;
        let days = chart(()).await;
        assert_eq!(
            (days["accepted"].clone(), days["limit"].clone()),
            (json!(2), json!(48)),
            "{days}"
        );
    });
}

/// Keys adopted into the 100,000-key store, every 15,000th named `needle` instead of `bulk`.
const MANY: usize = 100_000;
const NEEDLE_EVERY: usize = 15_000;

#[test]
fn a_store_of_100k_keys_paints_its_first_page_at_once_pages_on_and_searches_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let root = create(&db, ROOT, "root console", &["super-admin"], &["127.0.0.1"]);
    let lines: String = (1..=MANY)
        .map(|i| {
            let name = if i % NEEDLE_EVERY == 0 { "needle" } else { "bulk" };
            format!(
                "{{\"name\": \"{name} {i:06}\", \"roles\": [\"bot\"], \"key\": \"bulk_secret_{i:016}\"}}\n"
            )
        })
        .collect();
    let file = dir.path().join("keys.jsonl");
    std::fs::write(&file, lines).unwrap();
    let imported = Instant::now();
    run_cli(
        &db,
        &[
            "import-keys",
            "--actor",
            ROOT.0,
            "--actor-role",
            ROOT.1,
            file.to_str().unwrap(),
            "--json",
        ],
    );
    eprintln!("imported {MANY} keys in {:?}", imported.elapsed());
    let (_process, addr, _log) = serve(&db, dir.path());
    let url = format!("http://{addr}/");
    run(async {
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&url).await;
        page.type_into("#admin-key", &root.secret).await;
        // Measured in the browser: from the click on Sign in to the first rows in the table.
        let first_paint = page
            .js(
                "const t0 = performance.now();
                 document.querySelector('#sign-in-form button[type=submit]').click();
                 return new Promise((resolve) => {
                   const check = () => document.querySelectorAll('#keys-table tbody tr').length > 0
                     ? resolve(performance.now() - t0)
                     : requestAnimationFrame(check);
                   check();
                 });",
                vec![],
            )
            .await;
        eprintln!(
            "first paint of the keys table, {MANY} keys: {:.0} ms from signing in",
            first_paint.as_f64().unwrap()
        );
        let rows = "return document.querySelectorAll('#keys-table tbody tr').length;";
        assert_eq!(page.js(rows, vec![]).await, json!(100));
        let names =
            "return [...document.querySelectorAll('#keys-table tbody .key-name')].map(n => n.textContent);";
        let first = page.js(names, vec![]).await;
        // Newest first.
        assert_eq!(first[0], json!(format!("bulk {MANY:06}")));
        assert!(!page.has("#keys-more[hidden]").await, "no way to the next page");

        // The next page comes after the first, neither repeating nor skipping a key.
        page.click("#keys-more").await;
        page.until(
            "the second page",
            "return document.querySelectorAll('#keys-table tbody tr').length === 200;",
            vec![],
        )
        .await;
        let two = page.js(names, vec![]).await;
        let expected: Vec<String> = (MANY - 199..=MANY)
            .rev()
            .map(|i| format!("{} {i:06}", if i % NEEDLE_EVERY == 0 { "needle" } else { "bulk" }))
            .collect();
        assert_eq!(two, json!(expected));

        // The search is the server's: it finds the needles among every key, not only
        // among the 200 loaded.
        page.type_into("#key-search", "NEEDLE").await;
        page.until(
            "the search's answer",
            "return [...document.querySelectorAll('#keys-table tbody .key-name')].every(n => n.textContent.startsWith('needle'));",
            vec![],
        )
        .await;
        let needles: Vec<String> = (1..=MANY / NEEDLE_EVERY)
            .rev()
            .map(|n| format!("needle {:06}", n * NEEDLE_EVERY))
            .collect();
        assert_eq!(page.js(names, vec![]).await, json!(needles));
        assert!(page.has("#keys-more[hidden]").await, "a next page after the last");

        // Reloaded with the key still in the tab: the page asks one page again.
        let reload = page.js("location.reload(); return true;", vec![]).await;
        assert_eq!(reload, json!(true));
        page.until(
            "the keys table after a reload",
            "return document.readyState === 'complete' && document.querySelectorAll('#keys-table tbody tr').length === 100;",
            vec![],
        )
        .await;
        let since_navigation = page.js("return performance.now();", vec![]).await;
        eprintln!(
            "after a reload, 100 rows shown at most {:.0} ms after navigation began",
            since_navigation.as_f64().unwrap()
        );
        browser.close().await;
    });
}
