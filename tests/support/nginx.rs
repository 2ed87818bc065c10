//! A real nginx (Debian's `nginx-light`) on a free loopback port, with its own prefix
//! directory and configuration, in front of `keyledger serve` and an upstream app: shared
//! by `tests/serve.rs` and `benches/http.rs`.
//!
//! | location | what nginx does |
//! | --- | --- |
//! | `/api/` | `auth_request` to keyledger's `/auth`, then the upstream, with `X-Keyledger-Key-Id` set from the answer |
//! | `/admin/` | the same, with `/auth?role=admin` |
//! | `/open/` | the upstream, with no auth |
//!
//! The auth subrequest carries `X-Forwarded-For: $proxy_add_x_forwarded_for`, so keyledger,
//! trusting 127.0.0.1 (nginx), sees the client's address.
//!
//! Or the README's own recipe ([`Nginx::start_readme`]): its `nginx` block as written, with
//! only keyledger's address put in.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's package puts it.
pub(crate) const NGINX: &str = "/usr/sbin/nginx";

/// A running nginx, stopped on drop.
pub(crate) struct Nginx {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
}

/// The nginx binary, or a panic saying how to get it: a missing nginx must fail the test,
/// not skip it.
pub(crate) fn binary() -> &'static str {
    assert!(
        Path::new(NGINX).exists(),
        "{NGINX} is missing: .ci/run (test.sh) installs it with \
         `apt-get install nginx-light`; install it the same way to run this test"
    );
    NGINX
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").unwrap();
    probe.local_addr().unwrap().port()
}

/// A whole configuration with its prefix in `dir`: `http` holds the `http` block's
/// directives after the temp paths.
fn frame(dir: &Path, http: &str) -> String {
    let d = dir.display();
    // As root, the worker would switch to www-data, who cannot enter a private temp dir.
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let user = if is_root { "user root;" } else { "" };
    format!(
        "worker_processes 1;
{user}
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
{http}
}}
"
    )
}

/// The README's `nginx` block, a whole `nginx.conf`, with only what a test must change:
/// keyledger at `keyledger` and the app at `upstream` instead of the README's 127.0.0.1:8080
/// and 127.0.0.1:9000, nginx on `port` instead of 8000, and its files (pid, log, temp
/// paths) in `dir`, with a root worker when run as root (as [`frame`] does).
fn readme_config(dir: &Path, port: u16, keyledger: SocketAddr, upstream: SocketAddr) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let mut blocks = readme.split("```nginx\n").skip(1);
    let block = blocks.next().expect("README has an nginx block");
    assert!(blocks.next().is_none(), "README has one nginx recipe");
    let (block, _) = block.split_once("```").unwrap();
    let framed = frame(dir, "");
    let (head, temp_paths) = framed.split_once("http {\n").unwrap();
    let temp_paths = temp_paths.trim_end().trim_end_matches('}');
    let head: String = head
        .lines()
        .filter(|l| l.starts_with("user ") || l.starts_with("pid ") || l.starts_with("error_log "))
        .map(|l| format!("{l}\n"))
        .collect();
    let mut config = block.to_owned();
    for (readme_says, test_needs) in [
        ("server 127.0.0.1:8080;", format!("server {keyledger};")),
        ("server 127.0.0.1:9000;", format!("server {upstream};")),
        ("listen 127.0.0.1:8000;", format!("listen 127.0.0.1:{port};")),
        ("pid nginx.pid;\nerror_log error.log;\n", head),
        ("http {\n", format!("http {{\n{temp_paths}\n")),
    ] {
        assert!(
            config.contains(readme_says),
            "the README's recipe lost {readme_says:?}: {block}"
        );
        config = config.replacen(readme_says, &test_needs, 1);
    }
    config
}

fn config(dir: &Path, port: u16, keyledger: SocketAddr, upstream: SocketAddr, bind: Option<&str>) -> String {
    let bind = bind.map(|b| format!("proxy_bind {b};")).unwrap_or_default();
    let auth = |name: &str, uri: &str| {
        format!(
            "location = {name} {{
            internal;
            {bind}
            proxy_pass http://keyledger{uri};
            proxy_pass_request_body off;
            proxy_set_header Content-Length \"\";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }}"
        )
    };
    let protected = |prefix: &str, check: &str| {
        format!(
            "location {prefix} {{
            auth_request {check};
            auth_request_set $keyledger_key_id $upstream_http_x_keyledger_key_id;
            proxy_set_header X-Keyledger-Key-Id $keyledger_key_id;
            proxy_set_header X-Api-Key \"\";
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass http://app;
        }}"
        )
    };
    let http = format!(
        "    # The benchmark's connections make millions of requests each (nginx closes a client
    # connection after 1000 by default).
    keepalive_requests 1000000;
    upstream keyledger {{
        server {keyledger};
        keepalive 32;
        keepalive_requests 1000000;
        # Below keyledger's read timeout, which closes idle connections.
        keepalive_timeout 5s;
    }}
    upstream app {{ server {upstream}; keepalive 32; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port};
        {auth_any}
        {auth_admin}
        {api}
        {admin}
        location /open/ {{
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_pass http://app;
        }}
    }}",
        auth_any = auth("/_auth", "/auth"),
        auth_admin = auth("/_auth_admin", "/auth?role=admin"),
        api = protected("/api/", "/_auth"),
        admin = protected("/admin/", "/_auth_admin"),
    );
    frame(dir, &http)
}

impl Nginx {
    /// Starts nginx with its prefix in `dir`, in front of keyledger at `keyledger` and the
    /// app at `upstream`; returns once it accepts connections.
    pub(crate) fn start(dir: &Path, keyledger: SocketAddr, upstream: SocketAddr) -> Nginx {
        Nginx::start_bound(dir, keyledger, upstream, None)
    }

    /// As [`start`](Self::start), with nginx's connections to keyledger made from the
    /// loopback address `bind` (`proxy_bind`): a proxy address no other client on this
    /// host uses, as the README advises.
    pub(crate) fn start_bound(
        dir: &Path,
        keyledger: SocketAddr,
        upstream: SocketAddr,
        bind: Option<&str>,
    ) -> Nginx {
        Nginx::run(dir, |port| config(dir, port, keyledger, upstream, bind))
    }

    /// nginx with the README's recipe as written, in front of keyledger at `keyledger`
    /// (which must trust the recipe's `proxy_bind` address) and the app at `upstream`.
    pub(crate) fn start_readme(dir: &Path, keyledger: SocketAddr, upstream: SocketAddr) -> Nginx {
        Nginx::run(dir, |port| readme_config(dir, port, keyledger, upstream))
    }

    /// nginx with `http`, the `http` block's directives after the temp paths, which
    /// `http` makes for nginx's port.
    pub(crate) fn start_http(dir: &Path, http: impl FnOnce(u16) -> String) -> Nginx {
        Nginx::run(dir, |port| frame(dir, &http(port)))
    }

    /// Starts nginx on a free port with the configuration `config` makes for it.
    fn run(dir: &Path, config: impl FnOnce(u16) -> String) -> Nginx {
        let binary = binary();
        std::fs::create_dir_all(dir).unwrap();
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(port)).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that the workers can be killed with the master.
            .process_group(0)
            .spawn()
            .unwrap();
        let mut nginx = Nginx {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(nginx.addr).is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited with {status}: {}", nginx.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "nginx did not listen within 10 s: {}",
                nginx.error_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        nginx
    }

    /// What nginx logged (warnings and errors).
    pub(crate) fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGQUIT is nginx's graceful stop; after a bounded wait, SIGKILL.
        let _ = Command::new("kill")
            .args(["-QUIT", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}
