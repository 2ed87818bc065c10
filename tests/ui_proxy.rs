//! The admins' page behind a proxy that signs the platform's staff in and names them to
//! keyledger (`serve --admin-user-header X-Forwarded-User --admin-user alice=admin`): a
//! real nginx, which here names alice on every request (as oauth2-proxy or nginx's own
//! auth would once she signed in), in front of the real binary, in headless Chromium.

#![allow(clippy::unwrap_used)]

#[path = "support/nginx.rs"]
mod nginx;
#[path = "support/served.rs"]
mod served;
#[path = "support/ui_browser.rs"]
mod ui_browser;
#[path = "support/ui_server.rs"]
mod ui_server;

use ui_browser::{Browser, run};
use ui_server::{ROOT, create, http, serve_with};

/// Opened through the proxy, the page asks no key: it is alice's, and what she makes is
/// recorded as hers, through no key. Opened straight, it asks for a key as always.
#[test]
fn behind_a_proxy_that_names_the_admin_the_page_needs_no_key_and_acts_as_them() {
    nginx::binary();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("keys.db");
    let root = create(&db, ROOT, "root console", &["super-admin"], &["127.0.0.1"]);
    let (_serve, addr, _log) = serve_with(
        &db,
        dir.path(),
        &[
            "--admin-proxy",
            "127.0.0.2",
            "--admin-user-header",
            "X-Forwarded-User",
            "--admin-user",
            "alice=admin",
        ],
    );
    let proxy = nginx::Nginx::start_http(&dir.path().join("nginx"), |port| {
        format!(
            "    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_bind 127.0.0.2;
            proxy_pass http://{addr};
            proxy_set_header X-Forwarded-User alice;
        }}
    }}"
        )
    });
    run(async {
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&format!("http://{}/", proxy.addr)).await;
        page.until(
            "the page signed in as the proxy's admin",
            "return document.getElementById('whoami').textContent === 'Signed in as alice (admin)' \
             && !document.getElementById('keys').hidden;",
            vec![],
        )
        .await;
        page.click("#generate").await;
        page.type_into("#new-name", "alice's bot").await;
        page.type_into("#new-role", "bot").await;
        page.click("#add-role").await;
        page.click("#save").await;
        page.secret().await;
        page.let_secret_go().await;

        // Straight to keyledger, not through the proxy: the sign-in form, as always.
        page.goto(&format!("http://{addr}/")).await;
        page.find("#sign-in:not([hidden])").await;
        browser.close().await;
    });
    let keys = http(
        addr,
        "GET",
        "/v1/keys",
        &[("x-api-key", root.secret.as_str())],
        None,
    )
    .json();
    let made = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "alice's bot")
        .unwrap_or_else(|| panic!("{keys}"))
        .clone();
    assert_eq!(
        (made["created_by"].as_str(), made["created_by_role"].as_str()),
        (Some("alice"), Some("admin"))
    );
}
