//! The admins' page (feature `serve`): "Settings › API Keys" and the audit trail, three
//! files embedded in the binary and served by `keyledger serve` at `/`, `/ui/app.js` and
//! `/ui/app.css`, each with a strict Content-Security-Policy.
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
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");

/// Only this server's own script, style and API; no inline code, no frames, no form posts
/// (a form sent without its script would put what it holds in the URL).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'";

/// The page's routes, to merge into the server's router.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { file("text/html; charset=utf-8", INDEX) }))
        .route(
            "/ui/app.js",
            get(|| async { file("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/app.css",
            get(|| async { file("text/css; charset=utf-8", STYLE) }),
        )
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
