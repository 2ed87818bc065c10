//! The rate-limit headers of an answer about a key with rate limits: `RateLimit-Policy`
//! and `RateLimit` (structured fields, as draft-ietf-httpapi-ratelimit-headers defines
//! them), and `Retry-After` when the key is refused for now.
//!
//! Formats only, shared by [`ApiKeyLayer`](super::layer::ApiKeyLayer) and `keyledger
//! serve`'s `/auth`: where a key stands is the store's answer, never computed here.

use std::time::Duration;

use http::header::RETRY_AFTER;
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::access::RateStatus;
use crate::access::retry_after_secs;
use crate::clock::whole_seconds_up;
use crate::model::limit::RateLimit;

/// Where the key stands under a policy: `"100/1m";r=42;t=15`.
pub(crate) static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The policy: `"100/1m";q=100;w=60`.
pub(crate) static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Adds where an accepted key stands under the limit closest to running out:
/// `RateLimit-Policy: "100/1m";q=100;w=60` and `RateLimit: "100/1m";r=REMAINING;t=SECONDS`,
/// `t` the seconds until the whole burst is back, rounded up. Appended, not inserted: a
/// service's own policies stay in the same lists (each field is a list).
pub(crate) fn append_status(headers: &mut HeaderMap, status: &RateStatus) {
    append(
        headers,
        status.limit,
        status.remaining,
        whole_seconds_up(status.reset),
    );
}

/// Adds when a key refused for its rate limit may try again: `Retry-After` in whole
/// seconds, rounded up and at least 1, and the limit it is past with nothing remaining
/// until then (`t` equal to `Retry-After`, which the draft requires to be no earlier).
pub(crate) fn insert_refused(headers: &mut HeaderMap, limit: RateLimit, retry_after: Duration) {
    let seconds = retry_after_secs(retry_after);
    headers.insert(RETRY_AFTER, HeaderValue::from(seconds));
    append(headers, limit, 0, seconds);
}

/// Adds when a key out of credits may try again: `Retry-After` in whole seconds until its
/// next refill, rounded up and at least 1; nothing for credits that do not refill.
pub(crate) fn insert_usage_exceeded(headers: &mut HeaderMap, retry_after: Option<Duration>) {
    if let Some(wait) = retry_after {
        headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
    }
}

/// The policy's name is the limit as keyledger writes it everywhere (`100/1m`, `5000/1h`;
/// see [`RateLimit`]'s `Display`): stable for a given limit, distinct between a key's
/// limits (no window twice), and a valid structured-field string as is (digits, lower-case
/// letters and `/`, nothing to escape).
fn append(headers: &mut HeaderMap, limit: RateLimit, remaining: u32, reset_seconds: u64) {
    let policy = format!("\"{limit}\";q={};w={}", limit.limit(), limit.window().as_secs());
    let state = format!("\"{limit}\";r={remaining};t={reset_seconds}");
    // Both are plain ASCII (see above): these always convert.
    if let (Ok(policy), Ok(state)) = (HeaderValue::try_from(policy), HeaderValue::try_from(state)) {
        headers.append(RATELIMIT_POLICY.clone(), policy);
        headers.append(RATELIMIT.clone(), state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(s: &str) -> RateLimit {
        s.parse().unwrap()
    }

    fn values(headers: &HeaderMap, name: &HeaderName) -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn an_accepted_key_gets_its_policy_and_what_remains_with_the_reset_rounded_up() {
        let mut headers = HeaderMap::new();
        append_status(
            &mut headers,
            &RateStatus {
                limit: limit("100/1m"),
                remaining: 42,
                reset: Duration::from_millis(14_001),
            },
        );
        assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""100/1m";q=100;w=60"#]);
        assert_eq!(values(&headers, &RATELIMIT), [r#""100/1m";r=42;t=15"#]);
        assert!(headers.get(RETRY_AFTER).is_none());
    }

    #[test]
    fn a_service_s_own_policies_are_kept_beside_the_key_s() {
        let mut headers = HeaderMap::new();
        headers.insert(RATELIMIT.clone(), HeaderValue::from_static(r#""app";r=5;t=1"#));
        append_status(
            &mut headers,
            &RateStatus {
                limit: limit("5000/1h"),
                remaining: 0,
                reset: Duration::from_secs(3600),
            },
        );
        assert_eq!(
            values(&headers, &RATELIMIT),
            [r#""app";r=5;t=1"#, r#""5000/1h";r=0;t=3600"#]
        );
    }

    #[test]
    fn a_refused_key_is_told_to_retry_after_whole_seconds_rounded_up_and_at_least_one() {
        for (wait, seconds) in [
            (Duration::from_millis(1), 1),
            (Duration::ZERO, 1),
            (Duration::from_secs(3), 3),
            (Duration::from_millis(3_000_001), 3001),
        ] {
            let mut headers = HeaderMap::new();
            insert_refused(&mut headers, limit("2/1h"), wait);
            assert_eq!(values(&headers, &RETRY_AFTER), [seconds.to_string()]);
            assert_eq!(
                values(&headers, &RATELIMIT),
                [format!(r#""2/1h";r=0;t={seconds}"#)]
            );
            assert_eq!(values(&headers, &RATELIMIT_POLICY), [r#""2/1h";q=2;w=3600"#]);
        }
    }

    #[test]
    fn every_window_s_policy_name_is_a_structured_field_string_without_escapes() {
        for text in ["1/1s", "20/45s", "100/m", "7/90m", "5000/1h", "9/30d"] {
            let name = limit(text).to_string();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'/'),
                "{name}"
            );
        }
    }
}
