//! Forward-auth (`/auth`, `/auth/...`): nginx `auth_request`, Traefik ForwardAuth and Envoy
//! `ext_authz` ask it whether the original request's key may pass.
//!
//! Answers only 200, 401 and 403, and 200 only for a request the check passed: nginx turns
//! any other status into a 500, and a proxy must never read a failure here as a pass.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderName, HeaderValue, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Shared;
use crate::access::VerifiedKey;
use crate::http::layer::Refusal;
use crate::model::rules::MAX_ROLES;

/// The headers a passing answer carries.
static KEY_ID: HeaderName = HeaderName::from_static("x-keyledger-key-id");
static KEY_NAME: HeaderName = HeaderName::from_static("x-keyledger-key-name");
static ROLES: HeaderName = HeaderName::from_static("x-keyledger-roles");

/// Everything but the unreserved characters of RFC 3986 is percent-encoded in a key's
/// name, so the header is plain ASCII whatever the name holds.
const NAME: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The answer when deciding itself failed (a panic): 403, a refusal that blames neither
/// the key (a 401 tells clients their key is bad) nor lets anything through.
const UNAVAILABLE: &str = r#"{"error":"forbidden","reason":"unavailable"}"#;

/// `/auth`: the layer's check of the original request's headers and client address, with
/// the roles `?role=R` requires.
pub(super) async fn check(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let decided = std::panic::catch_unwind(AssertUnwindSafe(|| decide(&shared, &request)));
    decided.unwrap_or_else(|_| unavailable())
}

fn decide(shared: &Shared, request: &Request) -> Response {
    let Some(roles) = required_roles(request.uri().query()) else {
        return shared.layer.refusal_response(Refusal::RoleMissing);
    };
    match shared
        .layer
        .check_with_roles(request.headers(), request.extensions(), &roles)
    {
        Ok(key) => passed(&key),
        // A host of a fleet out of touch past its limit: like `unavailable`, a 403 that
        // blames no key (the layer itself answers 503, which nginx would turn into a 500).
        Err(Refusal::Key(crate::access::Rejection::Stale)) if !shared.layer.is_opaque() => forbidden(STALE),
        Err(refusal) => shared.layer.refusal_response(refusal),
    }
}

const STALE: &str = r#"{"error":"forbidden","reason":"stale"}"#;

/// 200, naming the key to the proxy.
fn passed(key: &VerifiedKey) -> Response {
    let name = utf8_percent_encode(key.name(), NAME).to_string();
    let roles = key.roles().collect::<Vec<_>>().join(",");
    // Ids are hex, names percent-encoded ASCII, roles `[a-z0-9_-]`: these always convert.
    let (Ok(id), Ok(name), Ok(roles)) = (
        HeaderValue::try_from(key.id().to_string()),
        HeaderValue::try_from(name),
        HeaderValue::try_from(roles),
    ) else {
        return unavailable();
    };
    let mut response = Response::new(axum::body::Body::empty());
    let headers = response.headers_mut();
    headers.insert(KEY_ID.clone(), id);
    headers.insert(KEY_NAME.clone(), name);
    headers.insert(ROLES.clone(), roles);
    response
}

fn unavailable() -> Response {
    forbidden(UNAVAILABLE)
}

fn forbidden(body: &'static str) -> Response {
    let mut response = Response::new(axum::body::Body::from(body));
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The `role` parameters of a query; other parameters are the original request's and are
/// ignored. `None` past [`MAX_ROLES`]: no key holds
/// that many, so the request is refused without looking further.
fn required_roles(query: Option<&str>) -> Option<Vec<String>> {
    let mut roles = Vec::new();
    for (name, value) in super::query_pairs(query) {
        if name == "role" {
            if roles.len() == MAX_ROLES {
                return None;
            }
            roles.push(value);
        }
    }
    Some(roles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_every_role_parameter_decoded() {
        assert_eq!(required_roles(None), Some(vec![]));
        assert_eq!(
            required_roles(Some("role=admin&x=1&role=bot%2Dv2&role=a+b")),
            Some(vec!["admin".to_owned(), "bot-v2".to_owned(), "a b".to_owned()])
        );
        assert_eq!(required_roles(Some("role")), Some(vec![String::new()]));
        let many = vec!["role=r"; MAX_ROLES + 1].join("&");
        assert_eq!(required_roles(Some(&many)), None);
    }

    #[test]
    fn a_name_header_is_plain_ascii_whatever_the_name() {
        let encoded = utf8_percent_encode("ops bot, ünïcode/\"x\"\r\n", NAME).to_string();
        assert_eq!(encoded, "ops%20bot%2C%20%C3%BCn%C3%AFcode%2F%22x%22%0D%0A");
        assert!(HeaderValue::try_from(encoded).is_ok());
    }
}
