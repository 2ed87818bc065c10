//! Reading an answer's rate-limit headers (draft-ietf-httpapi-ratelimit-headers), for the
//! tests of the tower layer and of `keyledger serve`.

use hyper::HeaderMap;

/// The `RateLimit` for the policy `name`: `(r, t)`; asserts there is exactly one
/// `RateLimit` and one `RateLimit-Policy`, `policy`.
pub(crate) fn rate_limit(headers: &HeaderMap, name: &str, policy: &str) -> (u32, u64) {
    let all = |field: &str| -> Vec<&str> {
        headers
            .get_all(field)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    };
    assert_eq!(all("ratelimit-policy"), [policy], "{headers:?}");
    let [state] = all("ratelimit")[..] else {
        panic!("one RateLimit: {headers:?}");
    };
    let params = state
        .strip_prefix(&format!("\"{name}\";r="))
        .unwrap_or_else(|| panic!("{state}"));
    let (r, t) = params.split_once(";t=").unwrap_or_else(|| panic!("{state}"));
    (r.parse().unwrap(), t.parse().unwrap())
}

/// `Retry-After`, in seconds.
pub(crate) fn retry_after(headers: &HeaderMap) -> u64 {
    headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|e| panic!("{e}: {headers:?}"))
}

/// Whether none of the rate-limit headers is there.
pub(crate) fn no_rate_headers(headers: &HeaderMap) -> bool {
    ["ratelimit", "ratelimit-policy", "retry-after"]
        .iter()
        .all(|h| !headers.contains_key(*h))
}
