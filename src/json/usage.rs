//! The JSON of a key's usage: what `usage --json` prints and `GET /v1/keys/{id}/usage`
//! answers, and the range both read when none is given. Shapes only; it decides nothing.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::json::rfc3339;
use crate::model::id::KeyId;
use crate::model::usage::Granularity;
use crate::model::usage::UsageBucket;

/// A key's requests per hour or day (`usage --json`, `GET /v1/keys/{id}/usage`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct UsageJson {
    /// 16 hex digits.
    pub key_id: String,
    /// `hour` or `day`.
    pub granularity: String,
    /// Oldest first, quiet buckets included.
    pub buckets: Vec<UsageBucketJson>,
}

/// One hour or day of a key's requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[non_exhaustive]
pub struct UsageBucketJson {
    /// RFC 3339, UTC: on the hour, or midnight for a day.
    pub start: String,
    /// Requests accepted.
    pub accepted: u64,
    /// Requests refused, by reason code (`rate_limited`, `ip_not_whitelisted`, ...); only
    /// reasons that occurred.
    pub rejected: BTreeMap<String, u64>,
}

impl UsageJson {
    /// Key `id`'s buckets at `granularity`, as JSON.
    pub fn new(id: KeyId, granularity: Granularity, buckets: &[UsageBucket]) -> Self {
        UsageJson {
            key_id: id.to_string(),
            granularity: granularity.as_str().to_owned(),
            buckets: buckets
                .iter()
                .map(|b| UsageBucketJson {
                    start: rfc3339(b.start),
                    accepted: b.accepted,
                    rejected: b
                        .rejected
                        .iter()
                        .filter(|&(_, n)| n > 0)
                        .map(|(code, n)| (code.to_owned(), n))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Where a usage range starts when only its end is given: 24 hourly buckets, or 30 daily
/// ones (both the last one included).
pub fn usage_since_default(granularity: Granularity, until: SystemTime) -> SystemTime {
    let back = match granularity {
        Granularity::Hour => Duration::from_secs(23 * 3600),
        Granularity::Day => Duration::from_secs(29 * 86_400),
    };
    until.checked_sub(back).unwrap_or(SystemTime::UNIX_EPOCH)
}
