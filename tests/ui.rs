//! The admins' page (`keyledger serve` at `/`) in a real browser: Debian's headless
//! Chromium, driven over WebDriver (chromedriver, on a free loopback port) by fantoccini,
//! against the real binary on a free loopback port with a store of its own, bootstrapped
//! with the command line as the README says. Every process is stopped with a bounded wait,
//! also when a test fails; a missing Chromium (or axe-core) fails the test.
//!
//! The server and the browser are driven through `support/ui_server.rs` and
//! `support/ui_browser.rs` (which also runs axe-core, the accessibility checker).

#![allow(clippy::unwrap_used)]

#[path = "support/served.rs"]
mod served;
#[path = "support/ui_browser.rs"]
mod ui_browser;
#[path = "support/ui_server.rs"]
mod ui_server;

use std::time::Instant;

use serde_json::{Value, json};

use ui_browser::{Browser, Page, run};
use ui_server::{LEGACY_SECRET, LEGACY_WHITELIST, ROOT, Server, create, http, run_cli, serve};

// ---------------------------------------------------------------------------------------
// The scenarios of the issues

#[test]
fn page_is_served_with_a_strict_content_security_policy() {
    let server = Server::start();
    // The page, and every file it loads, as it names them.
    let page = http(server.addr, "GET", "/", &[], None);
    let assets: Vec<String> = page
        .body
        .split(['"', '\''])
        .filter(|s| s.starts_with("/ui/"))
        .map(str::to_owned)
        .collect();
    assert!(
        assets.len() > 2 && assets.iter().any(|a| a.ends_with(".css")),
        "{assets:?}"
    );
    for path in std::iter::once("/").chain(assets.iter().map(String::as_str)) {
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
        let secret = page.secret().await;
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

        // Copied, Done closes the dialog at once, and forgets it.
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
        // Reading a key's details and usage is open to every admin, as reading the key is.
        assert!(
            !page
                .has(&format!(
                    "{bobs} button:not([data-action='usage']):not([data-action='details'])"
                ))
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
        let secret = page.secret().await;
        page.let_secret_go().await;
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
        let rolled = page.secret().await;
        assert_ne!(rolled, server.billing.secret);
        assert!(
            page.text("#secret-for")
                .await
                .contains("The previous one works until")
        );
        page.let_secret_go().await;
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
fn a_keys_usage_chart_shows_accepted_and_rejected_requests_by_reason_and_its_limit_scaled_to_the_bucket() {
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
        // A second reason: refused while disabled.
        let path = format!("/v1/keys/{id}/disable");
        assert_eq!(server.api(&server.alice.secret, "POST", &path, None).status, 200);
        assert_eq!(server.auth(&secret).status, 401);

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
                 const rejected = [...last.querySelectorAll('.bar-rejected')];
                 const limit = document.querySelector('#usage-chart .limit-line');
                 return {
                   buckets: buckets.length,
                   accepted: Number(accepted.dataset.count),
                   rejected: Object.fromEntries(rejected.map((r) => [r.dataset.reason, Number(r.dataset.count)])),
                   accepted_top: Number(accepted.getAttribute('y')),
                   // Stacked: each reason's bar starts where the one below ends.
                   stacked: rejected.every((r, i) => Number(r.getAttribute('height')) > 0 && Math.abs(
                     Number(r.getAttribute('y')) + Number(r.getAttribute('height'))
                       - Number((i ? rejected[i - 1] : accepted).getAttribute('y'))) < 0.01),
                   fills: rejected.map((r) => getComputedStyle(r).fill),
                   limit: limit && Number(limit.dataset.perBucket),
                   limit_y: limit && Number(limit.getAttribute('y1')),
                   legend: document.getElementById('usage-limit-text').textContent,
                   reasons: [...document.querySelectorAll('#usage-reasons .legend-item')].map((l) => l.textContent.trim()),
                   numbers: [...document.querySelectorAll('#usage-rows tr')]
                     .map((r) => [...r.cells].slice(1).map((c) => c.textContent)),
                 };",
                vec![],
            )
        };
        let hours = chart(()).await;
        assert_eq!(hours["buckets"], 24, "{hours}");
        assert_eq!(
            (hours["accepted"].clone(), hours["rejected"].clone()),
            (json!(2), json!({"rate_limited": 1, "disabled": 1})),
            "{hours}"
        );
        assert_eq!(hours["stacked"], true, "{hours}");
        let fills = hours["fills"].as_array().unwrap();
        assert_ne!(fills[0], fills[1], "each reason its own colour: {hours}");
        assert_eq!(
            hours["reasons"],
            json!(["rejected: rate limited", "rejected: key disabled"])
        );
        // The same numbers, as a table: the one bucket with requests.
        assert_eq!(
            hours["numbers"],
            json!([["2", "1 rate limited, 1 key disabled"]]),
            "{hours}"
        );
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

// ---------------------------------------------------------------------------------------
// Issue 23: the page as an admin found it at 1280×900

/// A key with the longest of everything a row shows (a 100-character name, a 64-character
/// role, two full IPv6 ranges, a 255-character external id): at 1280×900 the keys table does
/// not scroll sideways, and every action button is in view.
#[test]
fn the_actions_column_stays_in_view_beside_the_longest_whitelist_entries_names_and_roles() {
    run(async {
        let server = Server::start();
        let name = format!("nightly-reconciliation-{}", "x".repeat(77));
        let role = format!("reporting-{}", "a".repeat(54));
        let ranges = [
            "2001:db8:1234:5678:9abc:def0:1234:5600/120",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120",
        ];
        let external_id = format!("tenant-{}", "0123456789".repeat(25))
            .chars()
            .take(255)
            .collect::<String>();
        let created = server.api(
            &server.alice.secret,
            "POST",
            "/v1/keys",
            Some(&json!({"name": name, "roles": [role, "chat"], "ips": ranges, "external_id": external_id})),
        );
        assert_eq!(created.status, 201, "{created:?}");
        let id = created.json()["id"].as_str().unwrap().to_owned();

        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;
        let fit = page
            .js(
                "const wrap = document.querySelector('#keys .table-wrap');
                 const box = wrap.getBoundingClientRect();
                 const row = document.querySelector(arguments[0]);
                 const buttons = [...document.querySelectorAll('#keys-table td:last-child button')];
                 return {
                   table: [wrap.scrollWidth, wrap.clientWidth],
                   page: [document.documentElement.scrollWidth, document.documentElement.clientWidth],
                   buttons: row.querySelectorAll('td:last-child button').length,
                   cut: buttons.filter((b) => {
                     const r = b.getBoundingClientRect();
                     return r.left < box.left || r.right > box.right;
                   }).map((b) => b.getAttribute('aria-label')),
                   nets: [...row.querySelectorAll('.net')].map((n) => n.textContent),
                 };",
                vec![json!(Page::row(&id))],
            )
            .await;
        let width = |what: &str| {
            fit[what]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect::<Vec<_>>()
        };
        assert!(
            width("table")[0] <= width("table")[1],
            "the keys table scrolls sideways: {fit}"
        );
        assert!(
            width("page")[0] <= width("page")[1],
            "the page scrolls sideways: {fit}"
        );
        assert_eq!(fit["buttons"], 4, "{fit}");
        assert_eq!(fit["cut"], json!([]), "action buttons out of view: {fit}");
        // Wrapped, an entry still reads (and copies) as it is.
        assert_eq!(fit["nets"], json!(ranges), "{fit}");
        page.screenshot("ui-long-row.png", false).await;
        browser.close().await;
    });
}

#[test]
fn a_whitelisted_range_keeps_its_prefix_and_a_single_address_drops_it() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;
        let nets = |row: String| async move {
            page.js(
                "return [...document.querySelectorAll(arguments[0])].map((n) => n.textContent);",
                vec![json!(format!("{row} .net"))],
            )
            .await
        };
        // "2001:db8::/32" is a range of 2^96 addresses, not the address 2001:db8::.
        assert_eq!(nets(Page::row(&server.legacy.id)).await, json!(LEGACY_WHITELIST));
        assert_eq!(
            nets(Page::row(&server.alice.id)).await,
            json!(["127.0.0.1", "::1"])
        );

        // The same in the key's whitelist dialog.
        page.click(&format!(
            "{} button[data-action='whitelist']",
            Page::row(&server.legacy.id)
        ))
        .await;
        page.find("#whitelist-dialog[open]").await;
        let entries = page
            .js(
                "return [...document.querySelectorAll('#whitelist-entries li .mono')].map((n) => n.textContent);",
                vec![],
            )
            .await;
        assert_eq!(entries, json!(LEGACY_WHITELIST));

        // Only a whole address loses its length: /32 for IPv4, /128 for IPv6.
        let cases = [
            ("10.0.0.1/32", "10.0.0.1"),
            ("10.0.0.0/8", "10.0.0.0/8"),
            ("0.0.0.0/0", "0.0.0.0/0"),
            ("2001:db8::/32", "2001:db8::/32"),
            ("::1/128", "::1"),
            ("2001:db8::1/128", "2001:db8::1"),
            ("::/0", "::/0"),
            ("2001:db8::/96", "2001:db8::/96"),
        ];
        let shown = page
            .js(
                "return arguments[0].map((n) => shownNet(n));",
                vec![json!(cases.iter().map(|c| c.0).collect::<Vec<_>>())],
            )
            .await;
        assert_eq!(shown, json!(cases.iter().map(|c| c.1).collect::<Vec<_>>()));
        browser.close().await;
    });
}

#[test]
fn a_role_typed_but_not_added_is_saved_with_the_key() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;

        // A role that cannot be, typed and not added, stops the Save: nothing is made.
        let before = server.keys().len();
        page.click("#generate").await;
        page.type_into("#new-name", "moderation bot").await;
        page.click("#roles-summary").await;
        page.click("#role-options input[value='notifier']").await;
        page.type_into("#new-role", "Moderator!").await;
        page.click("#save").await;
        assert!(
            page.text("#new-role-error")
                .await
                .contains("may only use a-z, 0-9, - and _"),
            "{}",
            page.text("#new-role-error").await
        );
        assert!(page.has("#generate-dialog[open]").await);
        assert_eq!(server.keys().len(), before, "nothing was created");

        // Typed right and not added (the Add button never pressed): saved with the key,
        // with the external id and metadata given.
        page.type_into("#new-role", "moderator").await;
        page.type_into("#new-external-id", "forum-7").await;
        page.type_into("#new-meta", r#"{"team": "trust"}"#).await;
        page.click("#save").await;
        page.secret().await;
        let created = server
            .keys()
            .into_iter()
            .find(|k| k["name"] == "moderation bot")
            .expect("the new key is listed");
        assert_eq!(created["roles"], json!(["moderator", "notifier"]));
        assert_eq!(created["external_id"], json!("forum-7"));
        assert_eq!(created["meta"], json!({"team": "trust"}));
        browser.close().await;
    });
}

#[test]
fn an_admin_is_not_offered_the_super_admin_role_and_a_super_admin_is() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;
        let offered = |picker: &'static str| async move {
            page.js(
                "return [...document.querySelectorAll(arguments[0])].map((i) => i.value);",
                vec![json!(format!("#{picker} input[type=checkbox]"))],
            )
            .await
        };
        // Root's key holds super-admin, and Alice sees it in the table: the role is in
        // use, yet not hers to give.
        assert!(
            page.text(&Page::row(&server.root.id))
                .await
                .contains("super-admin")
        );
        page.click("#generate").await;
        let roles = offered("role-options").await;
        assert!(roles.as_array().unwrap().contains(&json!("admin")), "{roles}");
        assert!(
            !roles.as_array().unwrap().contains(&json!("super-admin")),
            "{roles}"
        );

        // Typed in, it is refused at once, and Save sends nothing.
        let before = server.keys().len();
        page.type_into("#new-name", "escalation").await;
        page.type_into("#new-role", "super-admin").await;
        assert_eq!(
            page.text("#new-role-error").await,
            "Only a super admin may give a key the super-admin role."
        );
        page.click("#save").await;
        assert!(page.has("#generate-dialog[open]").await);
        assert!(!page.has("#role-options input[value='super-admin']").await);
        assert_eq!(server.keys().len(), before);
        page.click("#generate-dialog button.cancel").await;

        // Nor when she changes a key of her own.
        page.click(&format!(
            "{} button[data-action='details']",
            Page::row(&server.billing.id)
        ))
        .await;
        page.find("#key-dialog[open]").await;
        let roles = offered("edit-role-options").await;
        assert!(
            !roles.as_array().unwrap().contains(&json!("super-admin")),
            "{roles}"
        );
        page.click("#key-dialog button.cancel").await;

        // A super admin is offered it.
        page.sign_out().await;
        page.sign_in(&server.root.secret).await;
        page.click("#generate").await;
        let roles = offered("role-options").await;
        assert!(
            roles.as_array().unwrap().contains(&json!("super-admin")),
            "{roles}"
        );
        browser.close().await;
    });
}

/// WebDriver's key code for Escape.
const ESCAPE: &str = "\u{e00c}";

#[test]
fn the_new_secret_stays_until_it_is_copied_or_the_admin_says_to_let_it_go() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;
        let generate = |name: &'static str| async move {
            page.click("#generate").await;
            page.type_into("#new-name", name).await;
            page.type_into("#new-role", "pager").await;
            page.click("#save").await;
            page.secret().await
        };
        let dialog = || async {
            page.js(
                "return {
                   open: document.getElementById('secret-dialog').open,
                   asking: !document.getElementById('secret-ask').hidden,
                   secret: document.getElementById('secret-value').value,
                   focus: document.activeElement.id,
                 };",
                vec![],
            )
            .await
        };
        let secret = generate("pager one").await;

        // Done, not copied: it asks, and the secret stays.
        page.click("#secret-done").await;
        let asked = dialog().await;
        assert_eq!(
            asked,
            json!({"open": true, "asking": true, "secret": secret, "focus": "secret-back"})
        );
        assert!(page.text("#secret-ask").await.contains("Did you copy the key?"));
        page.screenshot("ui-secret-ask.png", false).await;
        page.click("#secret-back").await;
        assert_eq!(
            dialog().await,
            json!({"open": true, "asking": false, "secret": secret, "focus": "secret-value"})
        );

        // Escape asks the same; in the question, Escape goes back to the secret.
        page.press(ESCAPE).await;
        assert_eq!(
            dialog().await,
            json!({"open": true, "asking": true, "secret": secret, "focus": "secret-back"})
        );
        page.press(ESCAPE).await;
        assert_eq!(
            dialog().await,
            json!({"open": true, "asking": false, "secret": secret, "focus": "secret-value"})
        );

        // Let go on purpose: it closes and is forgotten.
        page.press(ESCAPE).await;
        page.click("#secret-discard").await;
        let closed = dialog().await;
        assert_eq!(closed["open"], false, "{closed}");
        until_forgotten(page, &secret).await;

        // Copied: Escape closes it at once.
        let secret = generate("pager two").await;
        page.click("#copy-secret").await;
        page.until(
            "the copy",
            "return document.getElementById('copy-status').textContent === 'Copied to the clipboard.'",
            vec![],
        )
        .await;
        page.press(ESCAPE).await;
        page.until(
            "the dialog to close",
            "return !document.getElementById('secret-dialog').open",
            vec![],
        )
        .await;
        until_forgotten(page, &secret).await;
        browser.close().await;
    });
}

#[test]
fn refusals_are_said_in_words_and_a_key_without_the_admin_role_is_told_it_lacks_it() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;

        // Bob's bot key is Bob's (an admin), but holds only `notifier`: it is the key that
        // may not sign in, not Bob.
        page.type_into("#admin-key", &server.bobs_bot.secret).await;
        page.click("#sign-in-form button[type=submit]").await;
        page.until(
            "the refusal",
            "return document.getElementById('admin-key-error').textContent !== ''",
            vec![],
        )
        .await;
        let said = page.text("#admin-key-error").await;
        assert!(
            said.starts_with(
                "This key is not an admin key: it holds neither the admin nor the super-admin role"
            ),
            "{said}"
        );
        for raw in ["permission denied", "\"bob\"", "not an admin;"] {
            assert!(!said.contains(raw), "the server's words {raw:?}: {said}");
        }
        page.screenshot("ui-sign-in-refused.png", false).await;

        // A nameless key: what to do, not "invalid name: ... got 0".
        page.sign_in(&server.alice.secret).await;
        page.click("#generate").await;
        page.type_into("#new-role", "pager").await;
        page.click("#save").await;
        page.until(
            "the server's refusal of the name",
            "return document.getElementById('new-name-error').dataset.source === 'server'",
            vec![],
        )
        .await;
        assert_eq!(page.text("#new-name-error").await, "Enter a name for the key.");

        // Metadata that is JSON but not an object: the server's reason, in a sentence.
        page.type_into("#new-name", "pager").await;
        page.type_into("#new-meta", "[1, 2]").await;
        page.click("#save").await;
        page.until(
            "the server's refusal of the metadata",
            "return document.getElementById('new-meta-error').dataset.source === 'server'",
            vec![],
        )
        .await;
        assert_eq!(
            page.text("#new-meta-error").await,
            "This metadata cannot be used: must be a JSON object."
        );
        let shown = page
            .js(
                "return [...document.querySelectorAll('.error')].map((e) => e.textContent).filter((t) => t);",
                vec![],
            )
            .await;
        for text in shown.as_array().unwrap() {
            assert!(
                !text.as_str().unwrap().contains("invalid "),
                "raw server text: {shown}"
            );
        }
        browser.close().await;
    });
}

#[test]
fn an_imported_key_is_marked_imported_and_shows_no_empty_hint() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;
        let cells = |id: String| async move {
            page.js(
                "const row = document.querySelector(arguments[0]);
                 return {
                   tag: [...row.querySelectorAll('.tag-imported')].map((t) => t.textContent),
                   hint: row.querySelector('td[data-label=Hint]').textContent,
                 };",
                vec![json!(Page::row(&id))],
            )
            .await
        };
        let legacy = cells(server.legacy.id.clone()).await;
        // Its secret was adopted outside keyledger's format: all of it is secret, no hint.
        assert_eq!(legacy, json!({"tag": ["imported"], "hint": "none"}));
        assert!(!LEGACY_SECRET.starts_with("klk_"));
        let generated = cells(server.alice.id.clone()).await;
        assert_eq!(generated["tag"], json!([]), "{generated}");
        assert!(
            generated["hint"].as_str().unwrap().starts_with("klk_…"),
            "{generated}"
        );

        page.click(&format!(
            "{} button[data-action='details']",
            Page::row(&server.legacy.id)
        ))
        .await;
        page.find("#key-dialog[open]").await;
        let facts = page.text("#key-facts").await;
        assert!(
            facts.contains("imported (adopted from another system)"),
            "{facts}"
        );
        browser.close().await;
    });
}

#[test]
fn the_audit_trail_filters_by_day() {
    run(async {
        let server = Server::start();
        // A refused attempt, for the security trail: Alice may not delete Bob's key.
        let path = format!("/v1/keys/{}", server.bobs_bot.id);
        assert_eq!(
            server.api(&server.alice.secret, "DELETE", &path, None).status,
            403
        );
        // Every entry of the fixture is from today (UTC), as the server counts days.
        let all = server.api(&server.root.secret, "GET", "/v1/audit?unpaged=true", None);
        let entries: Vec<Value> = all
            .body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let today = entries[0]["at"].as_str().unwrap()[..10].to_owned();
        assert!(
            entries
                .iter()
                .all(|e| e["at"].as_str().unwrap().starts_with(&today))
        );

        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.root.secret).await;
        page.click("#nav-audit").await;
        page.find("#audit:not([hidden])").await;
        let day = |offset: i64| {
            let today = today.clone();
            async move {
                page.js(
                    "return new Date(Date.parse(arguments[0] + 'T00:00:00Z') + arguments[1] * 86400000).toISOString().slice(0, 10);",
                    vec![json!(today), json!(offset)],
                )
                .await
            }
        };
        let (yesterday, tomorrow) = (day(-1).await, day(1).await);
        // As a person picks a day in the date field: its value, then a change.
        let choose = |since: Value, until: Value| async move {
            page.js(
                "for (const [id, value] of [['audit-since', arguments[0]], ['audit-until', arguments[1]]]) {
                   const input = document.getElementById(id);
                   input.value = value;
                   input.dispatchEvent(new Event('change'));
                 }",
                vec![since, until],
            )
            .await;
        };
        let rows_are = |n: usize| {
            format!(
                "return !document.getElementById('audit-table').hidden
                    && document.querySelectorAll('#audit-table tbody tr').length === {n};"
            )
        };
        let nothing = |table: &str| {
            format!(
                "return !document.getElementById('audit-empty').hidden
                    && document.getElementById('{table}').hidden;"
            )
        };
        page.until("the whole trail", &rows_are(entries.len()), vec![])
            .await;
        choose(tomorrow.clone(), json!("")).await;
        page.until("nothing from tomorrow on", &nothing("audit-table"), vec![])
            .await;
        choose(json!(today), json!(today)).await;
        page.until("today's entries", &rows_are(entries.len()), vec![])
            .await;
        choose(json!(""), yesterday.clone()).await;
        page.until("nothing until yesterday", &nothing("audit-table"), vec![])
            .await;

        // The refused attempts take the same days.
        page.click("#audit-refused").await;
        choose(json!(today), json!("")).await;
        page.until(
            "today's refused attempt",
            "return document.querySelectorAll('#refused-table tbody tr').length === 1",
            vec![],
        )
        .await;
        choose(tomorrow.clone(), json!("")).await;
        page.until(
            "no refused attempt from tomorrow on",
            &nothing("refused-table"),
            vec![],
        )
        .await;

        // "To" before "From" is said, and nothing is asked.
        choose(tomorrow, yesterday).await;
        page.until(
            "the dates' error",
            "return document.getElementById('audit-dates-error').textContent !== ''",
            vec![],
        )
        .await;
        assert_eq!(
            page.text("#audit-dates-error").await,
            "“To” is before “From”: choose a later day."
        );
        browser.close().await;
    });
}

/// WCAG 2.2's contrast ratio (relative luminance) of each element's focus ring, and of each
/// field's border, against the colour behind the element; `arguments[0]`: selectors.
const CONTRAST: &str = "
    const rgb = (c) => c.match(/[\\d.]+/g).map(Number);
    const lum = (c) => {
      const [r, g, b] = rgb(c).slice(0, 3).map((v) => {
        const s = v / 255;
        return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      });
      return 0.2126 * r + 0.7152 * g + 0.0722 * b;
    };
    const ratio = (a, b) => {
      const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
      return Math.round(((x + 0.05) / (y + 0.05)) * 100) / 100;
    };
    const behind = (el) => {
      for (let n = el.parentElement; n; n = n.parentElement) {
        const c = getComputedStyle(n).backgroundColor;
        if (rgb(c)[3] !== 0) return c;
      }
      return 'rgb(255, 255, 255)';
    };
    return arguments[0].map((css) => {
      const el = document.querySelector(css);
      const field = el.matches('input:not([type=checkbox]), select, textarea, .dropdown');
      const border = field ? ratio(getComputedStyle(el).borderTopColor, behind(el)) : null;
      const ring = el.matches('.dropdown') ? el.querySelector('summary') : el;
      ring.focus();
      const style = getComputedStyle(ring);
      return {
        css,
        visible: ring.matches(':focus-visible') && style.outlineStyle !== 'none',
        ring: ratio(style.outlineColor, behind(ring)),
        border,
      };
    });";

#[test]
fn focus_rings_and_field_borders_stand_out_from_what_is_behind_them_at_least_3_to_1() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        let check = |selectors: &'static [&'static str]| async move {
            // From the keyboard, as the people the ring is for: focus then shows.
            page.press("\u{e004}").await;
            let found = page.js(CONTRAST, vec![json!(selectors)]).await;
            for item in found.as_array().unwrap() {
                assert_eq!(item["visible"], true, "no visible focus: {item}");
                assert!(
                    item["ring"].as_f64().unwrap() >= 3.0,
                    "focus ring under 3:1: {item}"
                );
                if let Some(border) = item["border"].as_f64() {
                    assert!(border >= 3.0, "border under 3:1: {item}");
                }
            }
            found
        };
        page.goto(&server.url("/")).await;
        page.find("#admin-key").await;
        let sign_in = check(&["#admin-key", "#sign-in-form button[type=submit]"]).await;
        page.sign_in(&server.alice.secret).await;
        let keys = check(&[
            "#sign-out",
            "#nav-audit",
            "#generate",
            "#key-search",
            "#key-status",
            "#keys-table button[data-action='roll']",
            "#keys-table button[data-action='details']",
        ])
        .await;
        page.click("#generate").await;
        let dialog = check(&[
            "#new-name",
            "#roles-dropdown",
            "#new-role",
            "#new-meta",
            "#new-expiry",
            "#save",
        ])
        .await;
        page.click("#generate-dialog button.cancel").await;
        page.click("#nav-audit").await;
        page.find("#audit:not([hidden])").await;
        let audit = check(&["#audit-actor", "#audit-since", "#audit-refused"]).await;
        eprintln!("contrast, sign-in: {sign_in}\nkeys: {keys}\nnew key: {dialog}\naudit: {audit}");
        browser.close().await;
    });
}

/// axe-core on every view and dialog of the page, in the states an admin meets them:
/// empty, filled, refused. No violation of impact serious or critical anywhere.
#[test]
fn every_view_and_dialog_passes_axe_core_with_no_serious_or_critical_violation() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        let mut found: Vec<(&str, Vec<String>)> = Vec::new();
        let mut checked = 0;
        macro_rules! axe {
            ($state:expr) => {{
                checked += 1;
                let violations = page.axe().await;
                if !violations.is_empty() {
                    found.push(($state, violations));
                }
            }};
        }
        page.goto(&server.url("/")).await;
        page.find("#admin-key").await;
        axe!("sign-in");
        page.type_into("#admin-key", "klk_not_a_key").await;
        page.click("#sign-in-form button[type=submit]").await;
        page.until(
            "the sign-in's refusal",
            "return document.getElementById('admin-key-error').textContent !== ''",
            vec![],
        )
        .await;
        axe!("sign-in, refused");

        page.sign_in(&server.alice.secret).await;
        axe!("keys list");
        page.type_into("#key-search", "no such key anywhere").await;
        page.find("#keys-empty:not([hidden])").await;
        axe!("keys list, nothing found");
        // Emptied (WebDriver's clear fires no `input`), as a person deleting the text.
        page.js(
            "const s = document.getElementById('key-search'); s.value = ''; s.dispatchEvent(new Event('input'));",
            vec![],
        )
        .await;
        page.find(&Page::row(&server.alice.id)).await;

        page.click("#generate").await;
        page.find("#generate-dialog[open]").await;
        axe!("new key dialog");
        page.click("#roles-summary").await;
        page.type_into("#new-role", "Bad Role").await;
        page.click("#add-ip").await;
        page.type_into("#ip-rows li:nth-child(1) input", "10.1.2.3/8")
            .await;
        page.type_into("#new-meta", "{not json").await;
        page.click("#save").await;
        axe!("new key dialog, refused as typed");
        page.type_into("#new-role", "").await;
        page.type_into("#new-meta", "").await;
        page.click("#role-options input[value='notifier']").await;
        page.click("#save").await;
        page.until(
            "the server's refusal",
            "return document.querySelector('#generate-form [data-source=server]') !== null",
            vec![],
        )
        .await;
        axe!("new key dialog, refused by the server");
        page.type_into("#new-name", "axe bot").await;
        page.type_into("#ip-rows li:nth-child(1) input", "10.0.0.0/8")
            .await;
        page.click("#save").await;
        page.secret().await;
        axe!("one-time secret dialog");
        page.click("#secret-done").await;
        page.find("#secret-ask:not([hidden])").await;
        axe!("one-time secret dialog, asking before it goes");
        page.click("#secret-discard").await;

        let billing = Page::row(&server.billing.id);
        page.click(&format!("{billing} button[data-action='roll']")).await;
        page.find("#confirm-dialog[open]").await;
        axe!("confirmation dialog (roll)");
        page.click("#confirm-dialog button.cancel").await;
        page.click(&format!("{billing} button[data-action='whitelist']"))
            .await;
        page.find("#whitelist-dialog[open]").await;
        axe!("whitelist dialog");
        page.type_into("#whitelist-add", "10.20.0.1/16").await;
        page.click("#whitelist-entries button[data-net='10.20.0.0/16']")
            .await;
        page.until(
            "the refusal to remove the last entry",
            "return document.getElementById('whitelist-error').textContent !== ''",
            vec![],
        )
        .await;
        axe!("whitelist dialog, refused");
        page.click("#whitelist-dialog button.cancel").await;

        page.click(&format!("{billing} button[data-action='details']"))
            .await;
        page.find("#key-dialog[open]").await;
        axe!("key dialog, editable");
        page.type_into("#edit-meta", "[1]").await;
        page.click("#key-save").await;
        page.until(
            "the refusal of the metadata",
            "return document.getElementById('edit-meta-error').textContent !== ''",
            vec![],
        )
        .await;
        axe!("key dialog, refused");
        page.click("#key-dialog button.cancel").await;
        page.click(&format!(
            "{} button[data-action='details']",
            Page::row(&server.bobs_bot.id)
        ))
        .await;
        page.find("#key-dialog[open]").await;
        axe!("key dialog, read only");
        page.click("#key-dialog button.cancel").await;

        page.click(&format!(
            "{} button[data-action='usage']",
            Page::row(&server.alice.id)
        ))
        .await;
        page.find("#usage-chart svg").await;
        page.click(".usage-numbers summary").await;
        axe!("usage dialog");
        page.click("#usage-dialog button.cancel").await;

        page.click("#nav-audit").await;
        page.find("#audit-table:not([hidden])").await;
        axe!("audit trail");
        page.js(
            "const i = document.getElementById('audit-until'); i.value = '2000-01-01'; i.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
        page.find("#audit-empty:not([hidden])").await;
        axe!("audit trail, nothing found");
        page.js(
            "const i = document.getElementById('audit-since'); i.value = '2001-01-01'; i.dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
        page.find("#audit-dates-error:not(:empty)").await;
        axe!("audit trail, dates refused");
        page.click("#audit-refused").await;
        page.js(
            "for (const id of ['audit-since', 'audit-until']) document.getElementById(id).value = '';
             document.getElementById('audit-until').dispatchEvent(new Event('change'));",
            vec![],
        )
        .await;
        page.find("#audit-empty:not([hidden])").await;
        axe!("refused attempts");

        // A phone: the tables as cards.
        page.viewport(390, 844).await;
        page.click("#nav-keys").await;
        page.find("#keys:not([hidden])").await;
        axe!("keys list on a phone");

        let report: Vec<String> = found
            .iter()
            .map(|(state, violations)| format!("{state}:\n  {}", violations.join("\n  ")))
            .collect();
        eprintln!(
            "axe-core {}: {checked} states of the page checked",
            ui_browser::AXE_VERSION
        );
        assert!(
            report.is_empty(),
            "axe-core found violations:\n{}",
            report.join("\n")
        );
        browser.close().await;
    });
}

#[test]
fn an_admin_changes_a_keys_name_roles_external_id_and_metadata_in_its_dialog() {
    run(async {
        let server = Server::start();
        let browser = Browser::start().await;
        let page = browser.page();
        page.goto(&server.url("/")).await;
        page.sign_in(&server.alice.secret).await;
        let id = server.legacy.id.clone();
        let stored = |server: &Server| {
            let answer = server.api(&server.alice.secret, "GET", &format!("/v1/keys/{id}"), None);
            assert_eq!(answer.status, 200, "{answer:?}");
            answer.json()
        };
        let save = |what: &'static str| async move {
            page.click("#key-save").await;
            page.until(
                what,
                "return document.getElementById('key-saved').textContent === 'Saved.'
                    || document.querySelector('#key-form .error:not(:empty)') !== null",
                vec![],
            )
            .await;
        };

        // What the table shows under the name, the dialog shows to change.
        let row = page.text(&Page::row(&id)).await;
        assert!(row.contains("owner acme-corp"), "{row}");
        page.click(&format!("{} button[data-action='details']", Page::row(&id)))
            .await;
        page.find("#key-dialog[open]").await;
        let form = page
            .js(
                "return ['edit-name', 'edit-external-id', 'edit-meta'].map((id) => document.getElementById(id).value);",
                vec![],
            )
            .await;
        assert_eq!(
            form,
            json!(["legacy crm", "acme-corp", "{\n  \"plan\": \"pro\"\n}"])
        );

        // Everything at once, in one `updated` record; the role typed is kept.
        page.type_into("#edit-name", "crm sync").await;
        page.type_into("#edit-role", "crm-reader").await;
        page.type_into("#edit-external-id", "acme-europe").await;
        page.type_into("#edit-meta", r#"{"plan": "team", "seats": 5}"#)
            .await;
        save("the first change").await;
        assert_eq!(page.text("#key-saved").await, "Saved.");
        page.screenshot("ui-key-dialog.png", false).await;
        let key = stored(&server);
        assert_eq!(
            (&key["name"], &key["roles"], &key["external_id"], &key["meta"]),
            (
                &json!("crm sync"),
                &json!(["crm", "crm-reader"]),
                &json!("acme-europe"),
                &json!({"plan": "team", "seats": 5})
            )
        );
        page.find(&format!("{} button[data-action='details']", Page::row(&id)))
            .await;
        page.until(
            "the table's new name",
            "return document.querySelector(arguments[0]).textContent === 'crm sync'",
            vec![json!(format!("{} .key-name", Page::row(&id)))],
        )
        .await;

        // Nothing changed: nothing sent.
        page.click("#key-save").await;
        page.until(
            "the page's answer",
            "return document.getElementById('key-error').textContent !== ''",
            vec![],
        )
        .await;
        assert_eq!(
            page.text("#key-error").await,
            "Nothing to save: no field was changed."
        );

        // Metadata that is not an object: refused, in words, and nothing changes.
        page.type_into("#edit-meta", "[1]").await;
        save("the refusal").await;
        assert_eq!(
            page.text("#edit-meta-error").await,
            "This metadata cannot be used: must be a JSON object."
        );
        assert_eq!(stored(&server)["meta"], json!({"plan": "team", "seats": 5}));

        // Emptied, the external id and the metadata are removed.
        page.type_into("#edit-external-id", "").await;
        page.type_into("#edit-meta", "").await;
        save("the removal").await;
        let key = stored(&server);
        assert_eq!((&key["external_id"], &key["meta"]), (&Value::Null, &Value::Null));
        let audit = server.api(
            &server.alice.secret,
            "GET",
            &format!("/v1/audit?key={id}&kind=updated&unpaged=true"),
            None,
        );
        // The page's two changes (the fixture made two of its own, from the command line).
        let through_page = audit
            .body
            .lines()
            .filter(|l| serde_json::from_str::<Value>(l).unwrap()["via"] == json!(server.alice.id))
            .count();
        assert_eq!(through_page, 2, "{audit:?}");
        page.click("#key-dialog button.cancel").await;

        // Bob's key: everything shown, nothing to change.
        page.click(&format!(
            "{} button[data-action='details']",
            Page::row(&server.bobs_bot.id)
        ))
        .await;
        page.find("#key-dialog[open]").await;
        assert!(page.has("#key-edit[hidden]").await && page.has("#key-save[hidden]").await);
        assert_eq!(
            page.text("#key-readonly").await,
            "You may not change this key: it was created by bob."
        );
        let facts = page.text("#key-facts").await;
        assert!(
            facts.contains("notifier") && facts.contains("192.0.2.0/24"),
            "{facts}"
        );
        browser.close().await;
    });
}

/// Waits until no field of the page holds `secret`: the dialog's `close` event, which
/// forgets it, comes as a task of its own after the dialog is closed.
async fn until_forgotten(page: Page<'_>, secret: &str) {
    page.until(
        "the secret is forgotten",
        "return ![...document.querySelectorAll('input, textarea')].some(i => i.value.includes(arguments[0]))",
        vec![json!(secret)],
    )
    .await;
    assert_eq!(page.where_is(secret).await["inputs"], json!([]));
}
