//! The admins' page's tests (tests/ui.rs), their browser side: Debian's headless Chromium
//! driven over WebDriver (chromedriver, on a free loopback port) by fantoccini, with a
//! viewport of 1280×900; what the tests do with the page, waiting where a person would;
//! and axe-core's accessibility check of the page as it stands.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::ui_server::{Process, STOP, WAIT, free_port, on_path, signal};

/// Headless Chromium under chromedriver, with a fresh profile.
pub(crate) struct Browser {
    client: Option<Client>,
    driver: Option<Process>,
    profile: TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a Chromium session through it. Panics,
    /// failing the test, if Chromium or its driver is not installed.
    pub(crate) async fn start() -> Browser {
        let install =
            "install Debian's `chromium` and `chromium-driver` (./test.sh does it when they are missing)";
        let chromium = on_path("chromium").unwrap_or_else(|| panic!("Chromium is not installed: {install}"));
        let chromedriver =
            on_path("chromedriver").unwrap_or_else(|| panic!("chromedriver is not installed: {install}"));
        let profile = tempfile::tempdir().unwrap();
        // A free port may be taken by another test's process before chromedriver binds it:
        // then it exits saying so, and it starts again on another. It counts as listening
        // once it says it started (not when the port answers: that could be another's).
        let (driver, port, log) = (1..=5)
            .find_map(|attempt| {
                let port = free_port();
                let out = profile.path().join(format!("chromedriver-{attempt}.out"));
                let log = profile.path().join(format!("chromedriver-{attempt}.log"));
                let mut driver = Process::spawn(
                    "chromedriver",
                    Command::new(&chromedriver)
                        .arg(format!("--port={port}"))
                        .arg(format!("--log-path={}", log.display()))
                        .stdout(std::fs::File::create(&out).unwrap())
                        .stderr(Stdio::null()),
                );
                let deadline = Instant::now() + WAIT;
                loop {
                    let said = std::fs::read_to_string(&out).unwrap_or_default()
                        + &std::fs::read_to_string(&log).unwrap_or_default();
                    if said.contains("started successfully") {
                        return Some((driver, port, log));
                    }
                    if driver.exited() {
                        assert!(
                            said.contains("ERR_ADDRESS_IN_USE") || said.contains("bind() failed"),
                            "chromedriver exited early:\n{said}"
                        );
                        return None;
                    }
                    assert!(
                        Instant::now() < deadline,
                        "chromedriver did not start within {WAIT:?}:\n{said}"
                    );
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
            .expect("chromedriver found no free port in five tries");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
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
                    "--window-size=1280,900",
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
        browser.page().viewport(VIEWPORT.0, VIEWPORT.1).await;
        browser
    }

    pub(crate) fn page(&self) -> Page<'_> {
        Page(self.client.as_ref().unwrap())
    }

    /// Ends the session (chromedriver closes Chromium), then stops chromedriver.
    pub(crate) async fn close(mut self) {
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
pub(crate) fn processes_with_arg(arg: &str) -> Vec<u32> {
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

/// The viewport every test starts with, and the pictures in `docs/` are taken at: the size
/// the page was reviewed at.
pub(crate) const VIEWPORT: (u32, u32) = (1280, 900);

/// What the tests do with the page, waiting for it where a person would.
#[derive(Clone, Copy)]
pub(crate) struct Page<'a>(pub(crate) &'a Client);

impl Page<'_> {
    pub(crate) async fn goto(self, url: &str) {
        self.0.goto(url).await.unwrap();
    }

    /// The element `css` once it is there.
    pub(crate) async fn find(self, css: &str) -> Element {
        self.0
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css} within {WAIT:?}: {e}"))
    }

    /// Whether `css` is there right now.
    pub(crate) async fn has(self, css: &str) -> bool {
        !self.0.find_all(Locator::Css(css)).await.unwrap().is_empty()
    }

    pub(crate) async fn click(self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    pub(crate) async fn type_into(self, css: &str, text: &str) {
        let input = self.find(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    pub(crate) async fn text(self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    pub(crate) async fn js(self, script: &str, args: Vec<Value>) -> Value {
        self.0
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    /// Waits until `script` (a function body) returns true.
    pub(crate) async fn until(self, what: &str, script: &str, args: Vec<Value>) {
        let deadline = Instant::now() + WAIT;
        while self.js(script, args.clone()).await != json!(true) {
            assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Saves a screenshot in the target directory's `ui-screenshots/`; with
    /// `KEYLEDGER_SCREENSHOTS=1`, one `for_docs` also replaces its copy in `docs/`.
    pub(crate) async fn screenshot(self, name: &str, for_docs: bool) {
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
    pub(crate) async fn sign_in(self, key: &str) {
        self.type_into("#admin-key", key).await;
        self.click("#sign-in-form button[type=submit]").await;
        self.until(
            "the keys table after signing in",
            "return !document.getElementById('keys').hidden && document.querySelectorAll('#keys-table tbody tr').length > 0;",
            vec![],
        )
        .await;
    }

    pub(crate) async fn sign_out(self) {
        self.click("#sign-out").await;
        self.find("#sign-in:not([hidden])").await;
    }

    /// Where `secret` is in the page: in the markup (never), and which inputs hold it.
    pub(crate) async fn where_is(self, secret: &str) -> Value {
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
    /// Sizes the window so that the page itself (the viewport) is `width`×`height`: the
    /// window's frame is measured, not assumed.
    pub(crate) async fn viewport(self, width: u32, height: u32) {
        self.0.set_window_size(width, height).await.unwrap();
        let inner = self
            .js("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        let frame = |i: usize, asked: u32| {
            let got = inner[i].as_u64().unwrap();
            u32::try_from(2 * u64::from(asked) - got.min(2 * u64::from(asked))).unwrap()
        };
        self.0
            .set_window_size(frame(0, width), frame(1, height))
            .await
            .unwrap();
        let inner = self
            .js("return [window.innerWidth, window.innerHeight];", vec![])
            .await;
        assert_eq!(inner, json!([width, height]), "the viewport");
    }

    /// Presses a key (a WebDriver key code, such as `\u{e00c}` for Escape) where the focus is.
    pub(crate) async fn press(self, key: &str) {
        let focused = self.0.active_element().await.unwrap();
        focused.send_keys(key).await.unwrap();
    }

    /// The one-time dialog's secret, once it is open.
    pub(crate) async fn secret(self) -> String {
        self.find("#secret-dialog[open]").await;
        self.find("#secret-value")
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap()
    }

    /// Closes the one-time dialog without copying its secret, as an admin who has it
    /// already would: Done, then "Close without copying".
    pub(crate) async fn let_secret_go(self) {
        self.click("#secret-done").await;
        self.click("#secret-discard").await;
        self.until(
            "the one-time dialog to close",
            "return !document.getElementById('secret-dialog').open",
            vec![],
        )
        .await;
    }

    /// axe-core's check of the page as it stands (views, the open dialog, the messages
    /// shown): its violations of impact serious or critical, each with the elements at
    /// fault, as lines to print. axe-core is injected through WebDriver (the page's CSP
    /// lets no other script in) when the page does not hold it yet.
    pub(crate) async fn axe(self) -> Vec<String> {
        if self.js("return typeof window.axe;", vec![]).await != json!("object") {
            let version = self
                .js(&format!("{}\n;return axe.version;", axe_source()), vec![])
                .await;
            assert_eq!(version, json!(AXE_VERSION), "axe-core's version");
        }
        let found = self
            .0
            .execute_async(
                r"const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(
                   (r) => done(r.violations
                     .filter((v) => v.impact === 'serious' || v.impact === 'critical')
                     .map((v) => `${v.impact} ${v.id}: ${v.help}\n` + v.nodes
                       .map((n) => `    ${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' ')}`)
                       .join('\n'))),
                   (e) => done([`axe.run failed: ${e}`]));",
                vec![],
            )
            .await
            .unwrap_or_else(|e| panic!("axe.run: {e}"));
        found
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn row(id: &str) -> String {
        format!("#keys-table tr[data-key-id='{id}']")
    }
}

/// The version of axe-core ./test.sh installs (`npm install --prefix target/tools/axe`).
pub(crate) const AXE_VERSION: &str = "4.14.1";

/// axe-core's `axe.min.js`: from `KEYLEDGER_AXE_JS` (./test.sh sets it), else where
/// ./test.sh installs it. Panics, failing the test, if it is not there.
fn axe_source() -> &'static str {
    static SOURCE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SOURCE.get_or_init(|| {
        let path = std::env::var_os("KEYLEDGER_AXE_JS").map_or_else(
            || {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target/tools/axe/node_modules/axe-core/axe.min.js")
            },
            PathBuf::from,
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "axe-core is not installed ({}: {e}): ./test.sh installs it (`npm install --prefix \
                 target/tools/axe axe-core@{AXE_VERSION}`), or set KEYLEDGER_AXE_JS to an axe.min.js",
                path.display()
            )
        })
    })
}

/// Runs a test's async body on a small runtime of its own.
pub(crate) fn run(test: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(test);
}
