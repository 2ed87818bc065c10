//! The admins' page (feature `serve`): "Settings › API Keys" and the audit trail, files
//! embedded in the binary and served by `keyledger serve` at `/` (the HTML) and under
//! `/ui/` (its style and its scripts, [`ASSETS`]), each with a strict
//! Content-Security-Policy.
//!
//! Serves bytes and headers only. The page is a client of the `/v1` admin API like any
//! other: this module decides nothing about keys, and adds no endpoint beyond the files.

use axum::Router;
use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderName, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::routing::get;

const INDEX: &str = include_str!("ui/index.html");

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// The page's style and scripts: path, type, content. The scripts are classic ones sharing
/// one scope, run in the order `index.html` lists them (`app.js`, last, starts the page).
const ASSETS: [(&str, &str, &str); 11] = [
    ("/ui/app.css", CSS, include_str!("ui/app.css")),
    ("/ui/base.js", JS, include_str!("ui/base.js")),
    ("/ui/api.js", JS, include_str!("ui/api.js")),
    ("/ui/net.js", JS, include_str!("ui/net.js")),
    ("/ui/roles.js", JS, include_str!("ui/roles.js")),
    ("/ui/keys.js", JS, include_str!("ui/keys.js")),
    ("/ui/generate.js", JS, include_str!("ui/generate.js")),
    ("/ui/detail.js", JS, include_str!("ui/detail.js")),
    ("/ui/usage.js", JS, include_str!("ui/usage.js")),
    ("/ui/audit.js", JS, include_str!("ui/audit.js")),
    ("/ui/app.js", JS, include_str!("ui/app.js")),
];

/// Only this server's own script, style and API; no inline code, no frames, no form posts
/// (a form sent without its script would put what it holds in the URL).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The page's routes, to merge into the server's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let page = Router::new().route("/", get(|| async { file("text/html; charset=utf-8", INDEX) }));
    ASSETS
        .into_iter()
        .fold(page, |router, (path, content_type, body)| {
            router.route(path, get(move || async move { file(content_type, body) }))
        })
}

/// One of the page's files, with the headers that keep it from being framed, cached,
/// sniffed as another type, or leaking its address to another site.
fn file(content_type: &'static str, body: &'static str) -> ([(HeaderName, HeaderValue); 6], &'static str) {
    let headers = [
        (CONTENT_TYPE, content_type),
        (CONTENT_SECURITY_POLICY, CSP),
        (X_FRAME_OPTIONS, "DENY"),
        (REFERRER_POLICY, "no-referrer"),
        (CACHE_CONTROL, "no-store"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
    .map(|(name, value)| (name, HeaderValue::from_static(value)));
    (headers, body)
}
