//! The words of usage: a bucket of counted requests, the requests refused by reason, and
//! the granularity a range is read at. Plain values: counting lives in the projection.

use std::time::SystemTime;

/// How long one [`UsageBucket`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Granularity {
    /// An hour, starting on the hour (UTC).
    Hour,
    /// A UTC day, starting at midnight UTC.
    Day,
}

impl Granularity {
    /// `hour` or `day`.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
        }
    }

    /// Every granularity.
    pub const ALL: [Granularity; 2] = [Granularity::Hour, Granularity::Day];

    /// Hours in one bucket.
    pub(crate) fn hours(self) -> u32 {
        match self {
            Granularity::Hour => 1,
            Granularity::Day => 24,
        }
    }
}

impl std::fmt::Display for Granularity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Granularity {
    type Err = crate::model::error::Error;

    /// `hour` or `day`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Granularity::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| crate::model::error::Error::invalid("granularity", "give hour or day"))
    }
}

/// Requests of one key refused, by reason. A request with an unknown key has no key to
/// count it against; one refused because the host is stale says nothing about the key:
/// neither is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RejectedCounts {
    /// `expired`.
    pub expired: u64,
    /// `disabled`.
    pub disabled: u64,
    /// `ip_not_whitelisted`.
    pub ip_not_whitelisted: u64,
    /// `no_whitelist`.
    pub no_whitelist: u64,
    /// `rate_limited`.
    pub rate_limited: u64,
    /// `usage_exceeded`.
    pub usage_exceeded: u64,
}

/// The reasons counted, in the order of their codes in the last-used file (1 to 6; 0 is
/// an accepted request).
pub(crate) const REASONS: [&str; 6] = [
    "expired",
    "disabled",
    "ip_not_whitelisted",
    "no_whitelist",
    "rate_limited",
    "usage_exceeded",
];

impl RejectedCounts {
    /// Each reason's code (as [`Rejection::code`](crate::Rejection::code) names it) and
    /// its count, zeros included, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> {
        REASONS.into_iter().zip(self.as_array())
    }

    /// All refused requests, whatever the reason.
    pub fn total(&self) -> u64 {
        self.as_array().iter().fold(0u64, |a, &n| a.saturating_add(n))
    }

    fn as_array(&self) -> [u64; 6] {
        [
            self.expired,
            self.disabled,
            self.ip_not_whitelisted,
            self.no_whitelist,
            self.rate_limited,
            self.usage_exceeded,
        ]
    }

    /// Counts by reason code (1 to 6, as in [`REASONS`]; index 0 is unused).
    pub(crate) fn from_codes(counts: &[u64; 7]) -> Self {
        RejectedCounts {
            expired: counts[1],
            disabled: counts[2],
            ip_not_whitelisted: counts[3],
            no_whitelist: counts[4],
            rate_limited: counts[5],
            usage_exceeded: counts[6],
        }
    }
}

/// One key's requests in one hour or day, as [`KeyStore::usage`](crate::KeyStore::usage)
/// returns them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UsageBucket {
    /// Where the bucket starts (on the hour, or at midnight UTC).
    pub start: SystemTime,
    /// Requests the key was accepted for.
    pub accepted: u64,
    /// Requests the key was refused for, by reason.
    pub rejected: RejectedCounts,
}
