//! Forward-auth (`/auth`, `/auth/...`): nginx `auth_request`, Traefik ForwardAuth and Envoy
//! `ext_authz` ask it whether the original request's key may pass.
//!
//! Answers 200 only for a request the check passed, else 401, 403, or 429 for a key past
//! its rate limit or out of credits (`?cost=N` spends N); with `?deny=403`, for nginx
//! (which turns any status but 200, 401 and 403 into a 500), that 429 becomes a 403 that
//! says `X-Keyledger-Reason: rate_limited` or `usage_exceeded`. A proxy must never read a
//! failure here as a pass.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::response::Response;
use http::{HeaderName, HeaderValue, StatusCode};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::Shared;
use crate::access::Rejection;
use crate::access::VerifiedKey;
use crate::access::reason::Reason;
use crate::http::layer::Refusal;
use crate::http::rate_headers;
use crate::model::credits::MAX_CREDITS;
use crate::model::rules::MAX_ROLES;

/// The headers a passing answer carries.
static KEY_ID: HeaderName = HeaderName::from_static(KEY_ID_HEADER);
/// The name of [`KEY_ID`], which the decision line of a pass reads back.
pub(super) const KEY_ID_HEADER: &str = "x-keyledger-key-id";
static KEY_NAME: HeaderName = HeaderName::from_static("x-keyledger-key-name");
static ROLES: HeaderName = HeaderName::from_static("x-keyledger-roles");
/// For a key with an external id: it, percent-encoded as the name is.
static EXTERNAL_ID: HeaderName = HeaderName::from_static("x-keyledger-external-id");
/// For a key with credits: how many remain after this request.
static CREDITS: HeaderName = HeaderName::from_static("x-keyledger-credits-remaining");
/// The reason of every refusal, as its body's `reason` says it: for proxies that pass on
/// headers and not bodies (nginx's `auth_request_set`).
static REASON: HeaderName = HeaderName::from_static("x-keyledger-reason");

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
    let started = Instant::now();
    let decided = std::panic::catch_unwind(AssertUnwindSafe(|| decide(&shared, &request)));
    let (response, refusal, reason) = match decided {
        Ok((response, refusal)) => (response, refusal, refusal.map(|r| r.reason())),
        Err(_) => (unavailable(), None, Some(Reason::Unavailable)),
    };
    shared.store().stats().decided(started, reason);
    super::log::auth(&shared, &request, &response, refusal, started);
    response
}

/// The answer, and the refusal it carries (`None` for a pass).
fn decide(shared: &Shared, request: &Request) -> (Response, Option<Refusal>) {
    let asked = match Asked::from_query(request.uri().query()) {
        Ok(asked) => asked,
        Err(refusal) => return (refused(shared, refusal, false), Some(refusal)),
    };
    match shared
        .layer
        .check_with_roles(request.headers(), request.extensions(), &asked.roles, asked.cost)
    {
        Ok(key) => {
            // One lookup apart from the verify, which never reads it.
            let owner = shared.layer.store().key_owner(key.id()).unwrap_or_default();
            (passed(&key, owner.external_id.as_deref()), None)
        }
        Err(refusal) => (refused(shared, refusal, asked.deny_forbidden), Some(refusal)),
    }
}

/// The layer's answer to `refusal`, but for the statuses a proxy may not pass on, and with
/// its reason in [`REASON`].
fn refused(shared: &Shared, refusal: Refusal, deny_forbidden: bool) -> Response {
    let (mut response, reason) = match refusal {
        // A host of a fleet out of touch past its limit: like `unavailable`, a 403 that
        // blames no key (the layer itself answers 503, which nginx would turn into a 500).
        Refusal::Key(Rejection::Stale) if !shared.layer.is_opaque() => (forbidden(STALE), "stale"),
        // The same wait as the layer's 429, in a status nginx takes.
        Refusal::Key(Rejection::RateLimited { limit, retry_after }) if deny_forbidden => {
            let mut response = forbidden(RATE_LIMITED);
            rate_headers::insert_refused(response.headers_mut(), limit, retry_after);
            (response, "rate_limited")
        }
        Refusal::Key(Rejection::UsageExceeded { retry_after }) if deny_forbidden => {
            let mut response = forbidden(USAGE_EXCEEDED);
            rate_headers::insert_usage_exceeded(response.headers_mut(), retry_after);
            (response, "usage_exceeded")
        }
        refusal => {
            let response: Response = shared.layer.refusal_response(refusal);
            let opaque = response.status() == StatusCode::UNAUTHORIZED && shared.layer.is_opaque();
            (response, if opaque { "unauthorized" } else { refusal.code() })
        }
    };
    response
        .headers_mut()
        .insert(REASON.clone(), HeaderValue::from_static(reason));
    response
}

const STALE: &str = r#"{"error":"forbidden","reason":"stale"}"#;
const RATE_LIMITED: &str = r#"{"error":"forbidden","reason":"rate_limited"}"#;
const USAGE_EXCEEDED: &str = r#"{"error":"forbidden","reason":"usage_exceeded"}"#;

/// 200, naming the key (and its external id, if it has one) to the proxy, with its
/// rate-limit headers if it has limits.
fn passed(key: &VerifiedKey, external_id: Option<&str>) -> Response {
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
    // Room for every header of a passing answer at once (growing the map twice costs more
    // than the rate-limit headers themselves).
    headers.reserve(6);
    headers.insert(KEY_ID.clone(), id);
    headers.insert(KEY_NAME.clone(), name);
    headers.insert(ROLES.clone(), roles);
    if let Some(external) = external_id
        .map(|e| utf8_percent_encode(e, NAME).to_string())
        .and_then(|e| HeaderValue::try_from(e).ok())
    {
        headers.insert(EXTERNAL_ID.clone(), external);
    }
    if let Some(status) = key.rate_status() {
        rate_headers::append_status(headers, &status);
    }
    if let Some(left) = key.credits_remaining() {
        headers.insert(CREDITS.clone(), HeaderValue::from(left));
    }
    response
}

fn unavailable() -> Response {
    let mut response = forbidden(UNAVAILABLE);
    response
        .headers_mut()
        .insert(REASON.clone(), HeaderValue::from_static("unavailable"));
    response
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

/// What the query asks of `/auth`.
struct Asked {
    /// Every `role` parameter: roles the key must hold.
    roles: Vec<String>,
    /// `deny=403`: a rate-limited key is answered 403 instead of 429, for nginx.
    deny_forbidden: bool,
    /// What the request costs of a key's credits: the largest `cost` parameter, 1 if none.
    cost: u64,
}

impl Asked {
    /// The `role`, `deny` and `cost` parameters of a query; other parameters are the
    /// original request's and are ignored (a client that adds its own can only be refused
    /// more, be told 403 instead of 429, or pay more: the largest `cost` counts, never
    /// less than 1). Refused past [`MAX_ROLES`] roles (no key holds that many, so the
    /// request is refused without looking further), and for a cost that is not a whole
    /// number from 1 to [`MAX_CREDITS`].
    fn from_query(query: Option<&str>) -> Result<Asked, Refusal> {
        let mut asked = Asked {
            roles: Vec::new(),
            deny_forbidden: false,
            cost: 1,
        };
        for (name, value) in super::query_pairs(query) {
            match name.as_str() {
                "role" if asked.roles.len() == MAX_ROLES => return Err(Refusal::RoleMissing),
                "role" => asked.roles.push(value),
                "deny" if value == "403" => asked.deny_forbidden = true,
                "cost" => match value.parse::<u64>() {
                    Ok(cost @ 1..=MAX_CREDITS) => asked.cost = asked.cost.max(cost),
                    _ => return Err(Refusal::CostInvalid),
                },
                _ => {}
            }
        }
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_largest_cost_counts_and_a_bad_one_refuses() {
        let cost = |query| Asked::from_query(Some(query)).map(|asked| asked.cost);
        assert_eq!(cost(""), Ok(1));
        assert_eq!(cost("cost=5"), Ok(5));
        assert_eq!(cost("cost=5&cost=2&role=bot"), Ok(5), "a client cannot lower it");
        assert_eq!(cost("cost=9007199254740992"), Ok(MAX_CREDITS));
        for bad in [
            "cost=0",
            "cost=-1",
            "cost=1.5",
            "cost=",
            "cost=9007199254740993",
            "cost=5&cost=x",
        ] {
            assert_eq!(cost(bad), Err(Refusal::CostInvalid), "{bad}");
        }
    }

    #[test]
    fn roles_come_from_every_role_parameter_decoded() {
        let roles = |query| Asked::from_query(query).map(|asked| asked.roles).ok();
        assert_eq!(roles(None), Some(vec![]));
        assert_eq!(
            roles(Some("role=admin&x=1&role=bot%2Dv2&role=a+b")),
            Some(vec!["admin".to_owned(), "bot-v2".to_owned(), "a b".to_owned()])
        );
        assert_eq!(roles(Some("role")), Some(vec![String::new()]));
        let many = vec!["role=r"; MAX_ROLES + 1].join("&");
        assert_eq!(roles(Some(&many)), None);
    }

    #[test]
    fn only_deny_403_turns_the_rate_limited_answer_into_a_403() {
        let deny = |query| {
            Asked::from_query(Some(query))
                .map(|asked| asked.deny_forbidden)
                .ok()
        };
        assert_eq!(deny("deny=403"), Some(true));
        assert_eq!(deny("role=bot&deny=403&x=1"), Some(true));
        assert_eq!(deny("deny=%34%303"), Some(true));
        for other in ["", "deny", "deny=429", "deny=403x", "Deny=403", "x=deny%3D403"] {
            assert_eq!(deny(other), Some(false), "{other}");
        }
    }

    #[test]
    fn a_name_header_is_plain_ascii_whatever_the_name() {
        let encoded = utf8_percent_encode("ops bot, ünïcode/\"x\"\r\n", NAME).to_string();
        assert_eq!(encoded, "ops%20bot%2C%20%C3%BCn%C3%AFcode%2F%22x%22%0D%0A");
        assert!(HeaderValue::try_from(encoded).is_ok());
    }
}
